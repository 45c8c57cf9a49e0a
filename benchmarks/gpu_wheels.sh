#!/usr/bin/env bash
# Stage what benchmarks/gpu_check.sh needs on the GPU machine (Python 3.12, no network there): the wheels
# its image lacks, into the git-ignored .whl/, and the DLPFC slice into .gpudata/. Run here, in the repo root.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
grep -qx '/.gpudata/' .git/info/exclude 2>/dev/null || echo /.gpudata/ >> .git/info/exclude
mkdir -p .whl .gpudata
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
    anndata==0.12.19 scanpy==1.11.5 legacy-api-wrap session-info2 natsort==8.4.0 array-api-compat umap-learn \
    pynndescent==0.7.0 zarr==3.1.6 donfig==0.8.1.post1 numcodecs==0.16.6 google-crc32c scikit-misc==0.5.3 \
    scverse-misc pandas==2.3.3
cp ../shared/bench/data/dlpfc_151673.h5ad .gpudata/
du -sh .whl .gpudata
