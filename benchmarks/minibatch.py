#!/usr/bin/env python
"""Fixed-budget mini-batch training against full-batch training (issue 14): ARI and wall time.

Never part of ``make test``. For each method, one synthetic layered slice (``spatialdomains.synthetic``,
prepared with the method's registered preprocessing) is trained once full batch and once per
``max_steps`` budget in forced mini-batch mode with ``batch_size`` < N (so batches are real); each
embedding is clustered with k-means (K = the true number of layers) and scored by ARI against the
truth. Rows are appended to the JSON as they finish, so a run cut short keeps what it measured.

Usage::

    python benchmarks/minibatch.py                                   # 1000 spots, batch 250
    python benchmarks/minibatch.py --spots 4000 --batch-size 1000 --steps 250,500,1000 --seeds 0,1,2
    # at the CPU switch (10k spots), with the defaults' batch size and budget:
    python benchmarks/minibatch.py --spots 10000 --genes 300 --batch-size 4096 --steps 1000 --name minibatch_10k
    # one mini-batch option both ways, the full-batch run skipped (its ARI given from an earlier run):
    python benchmarks/minibatch.py --methods staig --spots 10000 --genes 300 --batch-size 4096 --steps 1000 \
        --vary halo_positives=false,true --no-full --full-reference staig:0.826 --name minibatch_10k_halo

Writes ``benchmarks/results/<name>.json`` and ``<name>.md`` (``--name``, default ``minibatch``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))


def _prepare(method: str, n_spots: int, n_genes: int, seed: int):
    from spatialdomains.models import METHODS
    from spatialdomains.pp import prepare_group
    from spatialdomains.synthetic import make_slice

    a = make_slice(n_spots=n_spots, n_domains=5, n_genes=n_genes, random_state=seed)
    prep = METHODS[method].prep.replace(n_top_genes=min(METHODS[method].prep.n_top_genes, n_genes // 2))
    return prepare_group([a], prep, platform="visium")


def _run(method: str, adata, seed: int, epochs: int, **cfg) -> dict:
    from spatialdomains.cluster import kmeans
    from spatialdomains.metrics import ari
    from spatialdomains.models import METHODS
    from spatialdomains.train import TrainOptions

    spec = METHODS[method]
    extra = {"impute": False} if method == "spotscape" else {}
    config = spec.config_class(epochs=epochs, **extra, **cfg)
    t0 = time.perf_counter()
    res = spec.fit(adata, config=config, device="cpu", random_state=seed,
                   train_options=TrainOptions(epochs=epochs, progress=False))
    seconds = time.perf_counter() - t0
    truth = adata.obs["truth"].astype(str).to_numpy()
    k = len(set(truth))
    return {"ari": float(ari(truth, kmeans(res.embedding, k, random_state=0))), "seconds": seconds,
            "steps": int(res.info["steps"]), "batch_mode": res.info["batch_mode"],
            "memory_estimate_gb": float(res.info["memory_estimate_gb"])}


def _parse_value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _markdown(rows: list[dict], args) -> str:
    lines = ["# Fixed-budget mini-batch training vs full batch (`benchmarks/minibatch.py`)", "",
             f"Synthetic layered slice, {args.spots} spots, {args.genes} genes (5 layers), CPU; mini-batch "
             f"`batch_size={args.batch_size}` ({-(-args.spots // args.batch_size)} batches per epoch). Full batch: "
             f"`epochs` optimiser steps; mini-batch: `max_steps`. ARI of k-means (K=5) against the truth.", "",
             "| method | seed | mode | option | steps | ARI | delta vs full | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    given = dict(item.split(":") for item in args.full_reference.split(",")) if args.full_reference else {}
    full = {(r["method"], r["seed"]): r["ari"] for r in rows if r["batch_mode"] == "full"}
    for r in rows:
        ref = full.get((r["method"], r["seed"]), float(given[r["method"]]) if r["method"] in given else None)
        delta = "" if ref is None or r["batch_mode"] == "full" else f"{r['ari'] - ref:+.3f}"
        lines.append(f"| {r['method']} | {r['seed']} | {r['batch_mode']} | {r.get('option', '')} | {r['steps']} | "
                     f"{r['ari']:.3f} | {delta} | {r['seconds']:.0f} |")
    if given:
        lines += ["", "Full-batch ARI given from an earlier run (`--full-reference`): "
                  + ", ".join(f"{m} {v}" for m, v in given.items()) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default="staig,spotscape")
    p.add_argument("--spots", type=int, default=1000)
    p.add_argument("--genes", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--steps", default="100,200,400", help="max_steps budgets of the mini-batch runs")
    p.add_argument("--full-epochs", default="staig:400,spotscape:400", help="full-batch epochs per method")
    p.add_argument("--seeds", default="0")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--name", default="minibatch", help="result files <out>/<name>.json and .md")
    p.add_argument("--vary", default="", help="KEY=V1,V2: one mini-batch run per value of a config key")
    p.add_argument("--no-full", action="store_true", help="skip the full-batch runs")
    p.add_argument("--full-reference", default="", help="method:ARI,... full-batch ARI of an earlier run (with --no-full)")
    args = p.parse_args()
    full_epochs = dict(item.split(":") for item in args.full_epochs.split(","))
    rows: list[dict] = []
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in (int(s) for s in args.seeds.split(",")):
        for method in args.methods.split(","):
            adata = _prepare(method, args.spots, args.genes, seed)
            runs = [] if args.no_full else [("", int(full_epochs[method]), {"batch_mode": "full"})]
            key, _, values = args.vary.partition("=")
            options = [(f"{key}={v}", {key: _parse_value(v)}) for v in values.split(",")] if key else [("", {})]
            runs += [(label, 10**6, {"batch_mode": "minibatch", "batch_size": args.batch_size, "max_steps": int(s),
                                     **option}) for s in args.steps.split(",") for label, option in options]
            for label, epochs, cfg in runs:
                row = {"method": method, "seed": seed, "spots": args.spots, "option": label,
                       **_run(method, adata.copy(), seed, epochs, **cfg)}
                rows.append(row)
                print(json.dumps(row), flush=True)
                (args.out / f"{args.name}.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                                      "rows": rows}, indent=1))
                (args.out / f"{args.name}.md").write_text(_markdown(rows, args))


if __name__ == "__main__":
    main()
