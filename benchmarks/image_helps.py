#!/usr/bin/env python
"""Does the H&E image help STAIG? Synthetic slices whose image does or does not carry the domains.

Never part of ``make test``. For each synthetic tissue (``--tissues``) and image mode (``informative``:
texture follows the domain; ``uninformative``: one texture everywhere, the control), the image features
are computed once (``spatialdomains.image.image_features``: low-pass box filter, BYOL from random init,
PCA 16), then STAIG is trained per seed twice on the same prepared slice:

* ``gene``: no ``obsm['X_image']`` -> edge drop from gene similarity, plain loss;
* ``image``: with the image features -> edge drop from image distances and the debiased loss (spec A4, A6).

Both are clustered with mclust (K = planted domains) and scored by ARI against the planted truth. The
genes are made weak (``--marker-lfc``) so that the gene-only result leaves room for the image to help.

Usage::

    python benchmarks/image_helps.py                      # 2 tissues x 2 image modes x 3 seeds
    python benchmarks/image_helps.py --tissues 0 --seeds 0 --epochs 100

Writes ``<out>/image_helps.json`` (every run and the summary) and ``<out>/image_helps.md``.
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


def make_prepared(tissue: int, mode: str, args):
    from spatialdomains import synthetic
    from spatialdomains.models import get_method
    from spatialdomains.pp import prepare_group

    a = synthetic.make_slice(args.n_spots, args.n_domains, args.n_genes, random_state=tissue, image=True, image_mode=mode,
                             marker_lfc=tuple(args.marker_lfc), slice_id=f"tissue{tissue}")
    prep = get_method("staig").prep_for(1)
    prep = prep.replace(n_top_genes=min(prep.n_top_genes, args.n_genes // 2))
    return prepare_group([a], prep, platform="visium")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--tissues", default="0,1")
    p.add_argument("--modes", default="informative,uninformative")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--n-spots", type=int, default=1500)
    p.add_argument("--n-domains", type=int, default=5)
    p.add_argument("--n-genes", type=int, default=600)
    p.add_argument("--marker-lfc", type=float, nargs=2, default=(0.15, 0.45), help="weak genes by default")
    p.add_argument("--epochs", type=int, default=None, help="STAIG epochs (default: the method's)")
    p.add_argument("--backbone", default="resnet18")
    args = p.parse_args(argv)

    from spatialdomains import _logging, metrics
    from spatialdomains._utils import write_json_atomic, write_text_atomic
    from spatialdomains.cluster import mclust
    from spatialdomains.image import image_features
    from spatialdomains.models.staig import StaigConfig, fit_staig

    _logging.configure("WARNING")
    warnings.filterwarnings("ignore")
    config = StaigConfig() if args.epochs is None else StaigConfig(epochs=args.epochs)
    runs: list[dict] = []
    args.out.mkdir(parents=True, exist_ok=True)
    for tissue in [int(t) for t in args.tissues.split(",") if t]:
        for mode in [m for m in args.modes.split(",") if m]:
            adata = make_prepared(tissue, mode, args)
            t0 = time.perf_counter()
            image_features(adata, library_id=f"tissue{tissue}", backbone=args.backbone, patch_px=64, input_px=64,
                           epochs=1, device="cpu", random_state=tissue)
            image_s = time.perf_counter() - t0
            truth = adata.obs["truth"].astype(str).to_numpy()
            image_only = metrics.ari(truth, mclust(adata.obsm["X_image"], args.n_domains, random_state=2023))
            for seed in [int(s) for s in args.seeds.split(",") if s]:
                for variant in ("gene", "image"):
                    a = adata.copy()
                    if variant == "gene":
                        del a.obsm["X_image"]
                    t0 = time.perf_counter()
                    res = fit_staig(a, config=config, random_state=seed, device="cpu")
                    labels = mclust(res.embedding, args.n_domains, random_state=2023 + seed)
                    rec = {"tissue": tissue, "image_mode": mode, "seed": seed, "variant": variant,
                           "ari": metrics.ari(truth, labels), "image_only_ari": image_only,
                           "loss_variant": res.info["variant"], "edge_drop_source": res.info["edge_drop_source"],
                           "train_seconds": time.perf_counter() - t0, "image_seconds": image_s}
                    runs.append(rec)
                    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in rec.items()}), flush=True)
    summary = []
    for mode in dict.fromkeys(r["image_mode"] for r in runs):
        row: dict = {"image_mode": mode}
        for variant in ("gene", "image"):
            vals = [r["ari"] for r in runs if r["image_mode"] == mode and r["variant"] == variant]
            row[f"{variant}_ari_mean"], row[f"{variant}_ari_sd"] = float(np.mean(vals)), float(np.std(vals))
        diffs = [ri["ari"] - rg["ari"] for ri in runs for rg in runs
                 if ri["image_mode"] == rg["image_mode"] == mode and ri["variant"] == "image" and rg["variant"] == "gene"
                 and ri["tissue"] == rg["tissue"] and ri["seed"] == rg["seed"]]
        row["paired_diff_mean"] = float(np.mean(diffs))
        row["image_wins"] = f"{sum(d > 0 for d in diffs)}/{len(diffs)}"
        row["image_only_ari_mean"] = float(np.mean([r["image_only_ari"] for r in runs if r["image_mode"] == mode]))
        summary.append(row)
    write_json_atomic(args.out / "image_helps.json", {"args": {k: str(v) for k, v in vars(args).items()},
                                                       "runs": runs, "summary": summary})
    lines = ["| image | STAIG gene-only ARI | STAIG with image ARI | paired diff | image better | image features alone ARI |",
             "|---|---|---|---|---|---|"]
    for r in summary:
        lines.append(f"| {r['image_mode']} | {r['gene_ari_mean']:.3f} ± {r['gene_ari_sd']:.3f} | "
                     f"{r['image_ari_mean']:.3f} ± {r['image_ari_sd']:.3f} | {r['paired_diff_mean']:+.3f} | "
                     f"{r['image_wins']} | {r['image_only_ari_mean']:.3f} |")
    table = "\n".join(lines)
    write_text_atomic(args.out / "image_helps.md", "# Synthetic: does the image help STAIG?\n\n" + table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
