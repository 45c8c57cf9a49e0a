#!/usr/bin/env python
"""Training time, peak memory and accuracy of each method's defaults on one DLPFC slice, on one device.

Never part of ``make test``; ``benchmarks/gpu_check.sh`` runs it on the GPU machine. A short warm-up fit
on a synthetic slice first takes CUDA's context, cuBLAS handles and kernel caches out of the timing. Then
each method runs through :func:`accuracy.run_registered` (its preprocessing, graph and default config, as
the pipeline runs it) and is timed around ``fit`` alone. ARI is k-means (K = 7) on the embedding, scored on
the labelled spots; the embeddings are saved so that the method's default clustering (mclust, needs R) can
be scored on a machine with R::

    python benchmarks/gpu_dlpfc.py --device cuda --data .gpudata --out $OUT
    python benchmarks/gpu_dlpfc.py --score-npz benchmarks/out/gpu/gpu_dlpfc_embeddings.npz   # here, with R

Writes ``<out>/gpu_dlpfc.json`` and ``<out>/gpu_dlpfc_embeddings.npz``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from accuracy import DEFAULT_DATA, N_DOMAINS, RunContext, load_slice, run_registered  # noqa: E402


def _warm_up(device: str) -> float:
    from spatialdomains import synthetic
    from spatialdomains.models import get_method
    from spatialdomains.pp import prepare_group
    from spatialdomains.tl import parse_overrides

    t0 = time.perf_counter()
    a = prepare_group([synthetic.make_slice(300, 3, 100, random_state=0)], get_method("staig").prep.replace(n_top_genes=50),
                      platform="visium")
    for method in ("staig", "spotscape"):
        spec = get_method(method)
        spec.fit(a.copy(), config=parse_overrides(spec.config_class, {"epochs": 3}), device=device, random_state=0)
    return time.perf_counter() - t0


def _score(truth: np.ndarray, embedding: np.ndarray, algorithm: str, seed: int) -> float:
    from spatialdomains import cluster
    from spatialdomains.metrics import ari

    ok = truth != ""
    if algorithm.endswith("_cosine"):  # the *_cosine clusterings run on unit-length rows
        algorithm = algorithm[: -len("_cosine")]
        embedding = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
    if algorithm == "mclust":  # the R seed of benchmarks/accuracy.py
        labels = cluster.mclust(embedding, N_DOMAINS, random_state=2023 + seed)
    else:
        labels = cluster.kmeans(embedding, N_DOMAINS, random_state=seed)
    return float(ari(truth[ok], np.asarray(labels)[ok]))


def run(args) -> dict:
    import torch

    warnings.filterwarnings("ignore")
    cuda = args.device.startswith("cuda")
    record = {"device": args.device, "slice": args.slice, "seed": args.seed, "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name(0) if cuda else None, "runs": []}
    record["warm_up_seconds"] = _warm_up(args.device)
    arrays = {}
    for method in args.methods.split(","):
        a = load_slice(args.data, args.slice)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        out = run_registered(method, [a], RunContext(seed=args.seed, device=args.device, image=False, overrides={}))
        truth = np.where(out.obs["truth"].notna(), out.obs["truth"].astype(str), "").astype(str)
        row = {"method": method, **out.info,
               "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
               "ari_kmeans": _score(truth, out.embedding, "kmeans", args.seed)}
        record["runs"].append(row)
        arrays[f"{method}_embedding"] = np.asarray(out.embedding, dtype=np.float32)
        arrays["truth"] = truth
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
        _write(args.out, record, arrays)  # after each method: a run cut short keeps what finished
    return record


def _write(out: Path, record: dict, arrays: dict) -> None:
    from spatialdomains._utils import write_json_atomic

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "gpu_dlpfc_embeddings.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out / "gpu_dlpfc_embeddings.npz")
    write_json_atomic(out / "gpu_dlpfc.json", record)


def score_npz(path: Path, seed: int) -> None:
    """Each method's default clustering (``auto``: mclust for STAIG) on embeddings trained elsewhere."""
    from spatialdomains.models import get_method

    z = np.load(path)
    for key in sorted(k for k in z.files if k.endswith("_embedding")):
        method = key[: -len("_embedding")]
        algorithm = get_method(method).cluster_algorithm
        print(json.dumps({"method": method, "algorithm": algorithm,
                          "ari": round(_score(z["truth"], z[key], algorithm, seed), 4)}), flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--slice", default="151673")
    p.add_argument("--methods", default="staig,spotscape")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "out" / "gpu")
    p.add_argument("--score-npz", type=Path, help="score saved embeddings with each method's default clustering")
    args = p.parse_args(argv)
    if args.score_npz:
        score_npz(args.score_npz, args.seed)
    else:
        run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
