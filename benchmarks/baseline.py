#!/usr/bin/env python
"""Non-spatial baseline on DLPFC: our reader + `prepare` (STAIG recipe) + PCA 30 + k-means (K=7).

A sanity check of readers, HVG selection and metrics against the real labels: the ARI should sit in
0.2-0.4 (the benchmark README reports k-means 0.29 / 0.28 / 0.23 / 0.21 on 151673-151676).

    .venv/bin/python benchmarks/baseline.py [--data ../shared/bench/data] [--slices 151673,...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "bench" / "data"


def run(path: Path, seeds=(0, 1, 2)) -> dict:
    import scanpy as sc
    from sklearn.cluster import KMeans

    from spatialdomains import io, metrics, pp
    from spatialdomains.models import get_method

    adata = io.read(path, platform="visium", truth="ground_truth", library_id=path.stem)
    adata = adata[adata.obs["truth"].notna()].copy()
    prepared = pp.prepare_group([adata], get_method("staig").prep_for(1), platform="visium")
    sc.pp.pca(prepared, n_comps=30, random_state=0)
    truth = prepared.obs["truth"].astype(str).to_numpy()
    aris, nmis = [], []
    for seed in seeds:
        labels = KMeans(7, n_init=10, random_state=seed).fit_predict(prepared.obsm["X_pca"])
        aris.append(metrics.ari(truth, labels))
        nmis.append(metrics.nmi(truth, labels))
    return {"slice": path.stem, "n_spots": int(prepared.n_obs), "n_genes": int(prepared.n_vars),
            "ari_mean": float(np.mean(aris)), "ari_sd": float(np.std(aris)), "nmi_mean": float(np.mean(nmis))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--slices", default="151673,151674,151675,151676")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "baseline_kmeans.json")
    args = ap.parse_args()
    rows = [run(args.data / f"dlpfc_{s}.h5ad") for s in args.slices.split(",")]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print("| slice | spots | genes | k-means ARI (3 seeds) | NMI |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['slice']} | {r['n_spots']} | {r['n_genes']} | {r['ari_mean']:.3f} ± {r['ari_sd']:.3f} | "
              f"{r['nmi_mean']:.3f} |")
    sys.exit(0)


if __name__ == "__main__":
    main()
