#!/usr/bin/env bash
# One call on a GPU machine (the workplace's device tool), or a dry run on the CPU: install what the machine
# lacks from carried wheels, then, each stage bounded so that the call ends inside BUDGET seconds,
#   1. the DLPFC timing of both methods' defaults (train seconds, peak GPU memory, k-means ARI, embeddings),
#   2. the training unit tests on the device (SPATIALDOMAINS_TEST_DEVICE, and `-m gpu`),
#   3. scaling.py at 1M spots (Xenium-like 300 genes: STAIG sampled negatives, Spotscape full batch, which
#      its batch_mode=auto picks on a GPU of this size: its estimate is ~61 GB),
#   4. scaling.py at 100k spots with each method's full-batch default,
# and writes everything under $OUT (at most 8 files: the device tool brings back no more).
#
# Prepare here (once): the wheels the machine lacks, and the DLPFC slice in a carried folder:
#   echo /.whl/ >> .git/info/exclude; echo /.gpudata/ >> .git/info/exclude
#   bash benchmarks/gpu_wheels.sh   (the exact wheel list)
#   mkdir -p .gpudata && cp ../shared/bench/data/dlpfc_151673.h5ad .gpudata/
# Dry run on the CPU, small sizes:
#   DEVICE=cpu BIG=20000 MID=5000 WHEELS=none OUT=/tmp/gpu_dry PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh
# On the GPU machine (device tool, carry [".whl", ".gpudata"]):
#   bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/benchmarks/out/gpu}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
BUDGET=${BUDGET:-470}   # seconds for the whole script; stages that would not fit are skipped and say so
BIG=${BIG:-1000000}
MID=${MID:-100000}
EPOCHS=${EPOCHS:-3}
WHEELS=${WHEELS:-.whl}   # folder of carried wheels; the dry run sets WHEELS=none and uses its venv
mkdir -p "$OUT"
START=$(date +%s)
LOG="$OUT/gpu_check.log"
: >"$LOG"

say() { echo "[gpu_check $(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# stage NAME MIN_SECONDS MAX_SECONDS CMD...: runs CMD under min(MAX, time left), logs its output and status
stage() {
    local name=$1 need=$2 cap=$3; shift 3
    local avail; avail=$(left)
    if (( avail < need )); then say "stage $name SKIPPED: ${avail}s left, needs ${need}s"; return 0; fi
    local limit=$(( avail < cap ? avail : cap ))
    say "stage $name start (limit ${limit}s)"
    local t0; t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    say "stage $name rc=$rc seconds=$(( $(date +%s) - t0 ))"
}

# --- the Python stack: the machine has torch, torch-geometric, scikit-learn, pandas; not scanpy/anndata ---
export PYTHONPATH="$PWD/src:$PWD/benchmarks" PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    wheels=("$WHEELS"/*.whl)
    # anndata 0.12 needs pandas < 3: carry pandas 2.3, installed only where the machine's is 3 or newer
    if "$PYTHON" -c 'import sys, pandas; sys.exit(int(pandas.__version__.split(".")[0]) < 3)' 2>/dev/null; then
        say "machine has pandas >= 3: installing the carried pandas 2.3"
    else
        wheels=($(printf '%s\n' "${wheels[@]}" | grep -v '/pandas-'))
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "${wheels[@]}" >>"$LOG" 2>&1 || say "wheel install failed (see above)"
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
export CUBLAS_WORKSPACE_CONFIG=:4096:8   # deterministic cuBLAS for the tests that ask for it
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    "$PYTHON" -c 'import torch, torch_geometric, scanpy, anndata, pandas, numpy, sklearn
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      "| pyg", torch_geometric.__version__, "| scanpy", scanpy.__version__, "| anndata", anndata.__version__,
      "| pandas", pandas.__version__, "| numpy", numpy.__version__, "| sklearn", sklearn.__version__)
import spatialdomains; print("spatialdomains", spatialdomains.__version__)'
} >>"$LOG" 2>&1
say "environment ready"

# 1. DLPFC 151673, both methods, defaults
stage dlpfc 60 150 "$PYTHON" benchmarks/gpu_dlpfc.py --device "$DEVICE" --data .gpudata --out "$OUT"

# 2. the training tests on the device (the same assertions as on the CPU) and the CUDA-only ones
stage pytest 40 110 env SPATIALDOMAINS_TEST_DEVICE="$DEVICE" "$PYTHON" -m pytest -q -p no:cacheprovider \
    -m "not slow and not r and not pipeline" --junitxml="$OUT/gpu_pytest.xml" \
    tests/unit/test_cuda.py tests/unit/test_staig.py tests/unit/test_spotscape.py tests/unit/test_nn.py

# 3. 1M spots, Xenium-like panel (the expensive generation is shared through --data-cache)
SCALE=(benchmarks/scaling.py --device "$DEVICE" --epochs "$EPOCHS" --out "$OUT" --data-cache /tmp/gpu_check_data)
per_child=$(( ($(left) - 40) / 2 ))
stage scaling_1m 120 260 "$PYTHON" "${SCALE[@]}" --methods staig,spotscape --sizes "$BIG" --modes sampled,full \
    --genes 300 --hvg 300 --max-exact "$BIG" --timeout "$(( per_child > 60 ? per_child : 60 ))" --tag gpu_1m

# 4. 100k spots, Visium-like 3000 genes, each method's full-batch loss
per_child=$(( ($(left) - 20) / 2 ))
stage scaling_100k 60 200 "$PYTHON" "${SCALE[@]}" --methods staig,spotscape --sizes "$MID" --modes exact,full \
    --max-exact "$MID" --timeout "$(( per_child > 40 ? per_child : 40 ))" --tag gpu_100k

say "done; files: $(cd "$OUT" && ls | tr '\n' ' ')"
