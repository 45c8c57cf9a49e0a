#!/usr/bin/env python
"""Speed and memory of training versus the number of spots (synthetic Visium-like slices).

Never part of ``make test``. Each (method, size, loss mode) runs in its own subprocess so peak memory
is that run's alone: the child builds a synthetic layered slice (``spatialdomains.synthetic``),
prepares it with the method's registered preprocessing, trains a few epochs, and reports seconds per
epoch (mean over the epochs after the first), the peak resident memory of the process (and of the
training alone, as the growth over the RSS before training), and CUDA ``max_memory_allocated`` on a
GPU.

Usage::

    python benchmarks/scaling.py                              # 1k, 10k, 100k on CPU
    python benchmarks/scaling.py --sizes 1000,10000 --epochs 5
    python benchmarks/scaling.py --million --device cuda      # adds 1,000,000 spots
    python benchmarks/scaling.py --modes exact,sampled --max-exact 100000
    python benchmarks/scaling.py --methods spotscape --modes full,bf16,minibatch --sizes 1000,10000
    python benchmarks/scaling.py --methods staig,spotscape --sizes 1000000 --genes 300 --data-cache /tmp/sd

Writes ``<out>/scaling<_tag>.json`` and a markdown table beside it. Adding a method = one
``METHOD_SETUP`` entry (config overrides per loss mode).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: method -> mode -> config overrides. ``--modes`` picks among each method's modes (``exact`` is
#: STAIG's blocked exact loss, ``sampled`` its sampled negatives; ``full``/``minibatch`` Spotscape's batch
#: mode, ``bf16`` its full batch with bfloat16 feature products).
METHOD_SETUP: dict[str, dict[str, dict[str, Any]]] = {
    "staig": {"exact": {"loss": "exact"}, "sampled": {"loss": "sampled"}},
    "spotscape": {"full": {"batch_mode": "full", "impute": False},
                  "bf16": {"batch_mode": "full", "precision": "bfloat16", "impute": False},
                  "minibatch": {"batch_mode": "minibatch", "impute": False}},
}
#: modes that only run up to ``--max-exact`` spots
_BOUNDED_MODES = {"exact", "full", "bf16"}


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Runs inside the subprocess: build data, train ``args.epochs`` epochs, measure."""
    import resource
    import warnings

    import numpy as np
    import psutil

    warnings.filterwarnings("ignore")
    import torch

    from spatialdomains.models import get_method
    from spatialdomains.pp import prepare_group
    from spatialdomains.tl import parse_overrides
    from spatialdomains.train import TrainOptions

    if args.threads:
        torch.set_num_threads(args.threads)
    proc = psutil.Process()
    t0 = time.perf_counter()
    a = _synthetic_slice(args.n, args.genes, args.data_cache)
    gen_s = time.perf_counter() - t0
    spec = get_method(args.method)
    t0 = time.perf_counter()
    prep = spec.prep_for(1).replace(n_top_genes=min(args.hvg, args.genes))
    adata = prepare_group([a], prep, platform="visium")
    del a
    prep_s = time.perf_counter() - t0
    overrides = {**METHOD_SETUP[args.method][args.mode], "epochs": args.epochs}
    config = parse_overrides(spec.config_class, overrides)
    device = args.device
    if device == "cuda" and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    rss_before = proc.memory_info().rss
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    res = spec.fit(adata, config=config, device=device, random_state=0,
                   train_options=TrainOptions(epochs=args.epochs, progress=False))
    fit_s = time.perf_counter() - t0
    cpu_s = time.process_time() - cpu0
    secs = res.history["seconds"].to_numpy()
    steady = secs[1:] if len(secs) > 1 else secs
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = {
        "method": args.method, "mode": args.mode, "n_spots": int(adata.n_obs), "n_features": int(adata.n_vars),
        "n_edges": int(adata.obsp["spatial_connectivities"].nnz), "epochs": args.epochs,
        "seconds_per_epoch": float(np.mean(steady)), "first_epoch_seconds": float(secs[0]),
        "fit_seconds": fit_s, "fit_cpu_seconds": cpu_s, "generate_seconds": gen_s, "prepare_seconds": prep_s,
        "peak_rss_mb": peak_rss / 2**20, "rss_before_fit_mb": rss_before / 2**20,
        "fit_rss_growth_mb": max(peak_rss - rss_before, 0) / 2**20,
        "device": res.info.get("device"), "threads": torch.get_num_threads(),
        "loss_tile": res.info.get("loss_tile"), "variant": res.info.get("variant"),
    }
    if res.info.get("peak_gpu_mb") is not None:  # STAIG called it cuda_max_memory_allocated_mb before 0.2
        out["cuda_max_memory_allocated_mb"] = res.info["peak_gpu_mb"]
    return out


def _synthetic_slice(n: int, genes: int, cache: Path | None):
    """The synthetic slice of ``n`` spots, read from ``cache`` when an earlier child wrote it (the second
    method at 1M spots then skips a minute of generation)."""
    from spatialdomains import synthetic

    if cache is None:
        return synthetic.make_slice(n, 7, genes, random_state=0)
    import anndata as ad

    path = Path(cache) / f"synthetic_{n}x{genes}.h5ad"
    if path.exists():
        return ad.read_h5ad(path)
    a = synthetic.make_slice(n, 7, genes, random_state=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.h5ad")
    a.write_h5ad(tmp)
    tmp.replace(path)  # atomic: a child killed mid-write leaves no file the next one would trust
    return a


def markdown(rows: list[dict]) -> str:
    lines = ["| method | loss | spots | features | device | threads | s/epoch | fit RSS growth MB | peak RSS MB | CUDA max MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | {r['mode']} | {r['n']} | | | | failed: {r['error'][:60]} | | | |")
            continue
        cuda = f"{r['cuda_max_memory_allocated_mb']:.0f}" if r.get("cuda_max_memory_allocated_mb") is not None else ""
        lines.append(f"| {r['method']} | {r['mode']} | {r['n_spots']} | {r['n_features']} | {r['device']} | "
                     f"{r['threads']} | {r['seconds_per_epoch']:.3f} | {r['fit_rss_growth_mb']:.0f} | "
                     f"{r['peak_rss_mb']:.0f} | {cuda} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default="staig")
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--million", action="store_true", help="add 1,000,000 spots")
    p.add_argument("--modes", default="exact,sampled,full,minibatch",
                   help="modes to run; each method runs those of its modes listed here")
    p.add_argument("--max-exact", type=int, default=100_000,
                   help="largest size run with STAIG's exact loss or Spotscape's full batch")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--genes", type=int, default=3000)
    p.add_argument("--hvg", type=int, default=3000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per run")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--tag", default="")
    p.add_argument("--data-cache", type=Path, default=None,
                   help="folder to keep each size's synthetic slice in, shared by the methods' runs")
    # internal: child mode
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return 0

    sizes = [int(s) for s in args.sizes.split(",") if s] + ([1_000_000] if args.million else [])
    rows: list[dict] = []
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = f"_{args.tag}" if args.tag else ""
    known = {m for setup in METHOD_SETUP.values() for m in setup}
    unknown = sorted(set(args.modes.split(",")) - known - {""})
    if unknown:
        raise SystemExit(f"unknown mode(s) {unknown}; available: {sorted(known)}")
    for method in args.methods.split(","):
        for n in sizes:
            modes = [m for m in args.modes.split(",") if m in METHOD_SETUP[method]]
            if not modes:
                raise SystemExit(f"{method}: none of --modes {args.modes!r}; have {sorted(METHOD_SETUP[method])}")
            for mode in modes:
                if mode in _BOUNDED_MODES and n > args.max_exact:
                    continue
                cmd = [sys.executable, __file__, "--child", "--method", method, "--mode", mode, "--n", str(n),
                       "--epochs", str(args.epochs), "--genes", str(args.genes), "--hvg", str(args.hvg),
                       "--device", args.device, "--threads", str(args.threads)]
                if args.data_cache:
                    cmd += ["--data-cache", str(args.data_cache)]
                t0 = time.perf_counter()
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
                    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                    if proc.returncode != 0 or not lines:
                        row = {"method": method, "mode": mode, "n": n,
                               "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
                    else:
                        row = json.loads(lines[-1][len("RESULT "):])
                except subprocess.TimeoutExpired:
                    row = {"method": method, "mode": mode, "n": n, "error": f"timeout after {args.timeout} s"}
                row["wall_seconds"] = time.perf_counter() - t0
                rows.append(row)
                print(json.dumps(row), flush=True)
                _write(args, rows, suffix)
    print(markdown(rows))
    return 0


def _write(args, rows, suffix) -> None:
    from spatialdomains._utils import write_json_atomic, write_text_atomic

    write_json_atomic(args.out / f"scaling{suffix}.json", {"host": os.uname().nodename, "rows": rows})
    write_text_atomic(args.out / f"scaling{suffix}.md", "# Training scaling\n\n" + markdown(rows))


if __name__ == "__main__":
    sys.exit(main())
