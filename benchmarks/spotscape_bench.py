"""Spotscape benchmarks on DLPFC 151673-151676 (read in place from ../shared/bench/data).

Spotscape-specific benchmarks beside ``benchmarks/accuracy.py`` (which runs Spotscape with the shared
protocol) and ``benchmarks/scaling.py``:

* :func:`single_slice` - one slice, k-means and mclust ARI/NMI per seed;
* :func:`integration` - joint training of several slices, joint ARI plus batch-mixing metrics, with
  ablations (``no_pcl``, ``no_ss``, ``no_telescope``, ``concat`` = neither PCL nor SS);
* :func:`imputation` - masked-entry RMSE / median L1 of the decoder output vs the unimputed baseline;
* :func:`timing` - seconds per epoch and peak RSS on synthetic data of a given size and batch mode;
* :func:`summary` - the default-config single-slice table (``spotscape_single.md``) from the JSON lines.

Run ``python benchmarks/spotscape_bench.py single --slices 151673 --seeds 0 1 2`` etc.; results are
appended as JSON lines to ``benchmarks/results/spotscape.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "bench" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "spotscape.jsonl"
LAYER_ORDER = ["WM", "L6", "L5", "L4", "L3", "L2", "L1"]


def load_dlpfc(sample: str):
    """One DLPFC slice with ``obs['slice']``, ``obs['truth']`` (NaN = unlabelled) and raw counts."""
    import anndata as ad

    a = ad.read_h5ad(DATA / f"dlpfc_{sample}.h5ad")
    a.obs["slice"] = str(sample)
    a.obs["truth"] = a.obs["ground_truth"].astype(object)
    a.obs_names = [f"{b}_{sample}" for b in a.obs_names]
    a.var_names_make_unique()
    a.layers["counts"] = a.X.copy()
    return a


def prepare(samples, n_top_genes: int | None = None):
    from spatialdomains.models import get_method
    from spatialdomains.pp import prepare_group

    spec = get_method("spotscape")
    recipe = spec.prep_for(len(samples))
    if n_top_genes:
        recipe = recipe.replace(n_top_genes=n_top_genes)
    return prepare_group([load_dlpfc(s) for s in samples], recipe, platform="visium")


def _labelled(adata):
    truth = adata.obs["truth"]
    return truth.notna().to_numpy()


def kmeans_labels(emb: np.ndarray, k: int, seed: int) -> np.ndarray:
    from spatialdomains.cluster import kmeans

    return np.asarray(kmeans(emb, k, random_state=seed))


def mclust_labels(emb: np.ndarray, k: int, seed: int) -> np.ndarray | None:
    from spatialdomains.cluster import mclust, mclust_available

    if not mclust_available():
        print("mclust unavailable", file=sys.stderr)
        return None
    return np.asarray(mclust(emb, k, random_state=seed))


def ari(a, b) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(a, b))


def nmi(a, b) -> float:
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(a, b))


def fit(adata, seed: int = 0, n_domains: int | None = 7, device: str = "cpu", **overrides):
    from spatialdomains.models.spotscape import SpotscapeConfig, fit_spotscape
    from spatialdomains.train import TrainOptions

    cfg = SpotscapeConfig(**overrides)
    t = time.perf_counter()
    res = fit_spotscape(adata, config=cfg, random_state=seed, n_domains=n_domains, device=device,
                        train_options=TrainOptions(epochs=cfg.epochs, progress=False))
    return res, time.perf_counter() - t


def fit_snapshots(adata, epochs: int, every: int = 100, seed: int = 0, n_domains: int | None = 7, **overrides):
    """Train once and return ``[(epoch, embedding)]`` every ``every`` epochs (for screening lr/epochs)."""
    import torch

    import spatialdomains.train as T
    from spatialdomains.graph import adjacency_from_adata
    from spatialdomains.models import spotscape as S
    from spatialdomains.nn import ConstantFeatures

    snaps: list[tuple[int, dict]] = []
    original = T.run_training

    def wrapped(model, optimizer, step, options, **kwargs):
        def step_snap(epoch, batch):
            if epoch and batch == 0 and epoch % every == 0:
                snaps.append((epoch, {k: v.detach().clone() for k, v in model.state_dict().items()}))
            return step(epoch, batch)

        return original(model, optimizer, step_snap, options, **kwargs)

    T.run_training = wrapped
    try:
        res, secs = fit(adata, seed=seed, n_domains=n_domains, epochs=epochs, **overrides)
    finally:
        T.run_training = original
    cfg = S.SpotscapeConfig(**{k: v for k, v in overrides.items() if k != "epochs"})
    g = adata.n_vars
    model = S.Spotscape(S.SpotscapeEncoder(g, cfg.hidden_channels, cfg.out_channels, cfg.bn_momentum),
                        S.SpotscapeDecoder(cfg.out_channels, cfg.decoder_hidden, g))
    feats = ConstantFeatures(adata.X, torch.device("cpu"))
    ei = torch.as_tensor(np.stack(adjacency_from_adata(adata).nonzero()).astype(np.int64))
    out = []
    for epoch, sd in snaps:
        model.load_state_dict(sd)
        out.append((epoch, model.embed(feats, ei).numpy()))
    out.append((epochs, res.embedding))
    return out, res, secs


def score_embedding(adata, emb: np.ndarray, seed: int, k: int = 7, use_mclust: bool = True) -> dict:
    lab = _labelled(adata)
    truth = adata.obs["truth"].to_numpy()[lab]
    out = {}
    km = kmeans_labels(emb, k, seed)
    out["ari_kmeans"] = ari(truth, km[lab])
    out["nmi_kmeans"] = nmi(truth, km[lab])
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    out["ari_kmeans_cosine"] = ari(truth, kmeans_labels(unit, k, seed)[lab])
    if use_mclust:
        mc = mclust_labels(emb, k, seed)
        if mc is not None:
            out["ari_mclust"] = ari(truth, mc[lab])
            out["nmi_mclust"] = nmi(truth, mc[lab])
    return out


def pseudotime_spearman(adata, emb: np.ndarray, seed: int, k: int = 7) -> dict:
    """Diffusion pseudotime on the embedding vs the layer order (WM=0, L6=1, ..., L1=6), Spearman.

    The root is a predicted domain, not the truth: the k-means domain holding the largest share of WM
    spots (the paper follows SpaceFlow and starts from the white matter). Only labelled spots are scored.
    """
    from scipy.stats import spearmanr

    from spatialdomains.align import pseudotime

    km = kmeans_labels(emb, k, seed).astype(str)
    truth = adata.obs["truth"].astype(object).to_numpy()
    wm = truth == "WM"
    root = max(np.unique(km), key=lambda c: (wm & (km == c)).sum() / max((km == c).sum(), 1))
    a = adata.copy()
    a.obsm["X_spotscape"] = emb
    a.obs["domain_spotscape"] = km
    pseudotime(a, root_domain=root, random_state=seed)
    pt = a.obs["pseudotime_spotscape"].to_numpy()
    order = {name: i for i, name in enumerate(LAYER_ORDER)}
    lab = np.array([t in order for t in truth]) & np.isfinite(pt)
    rho = spearmanr(pt[lab], [order[t] for t in truth[lab]]).statistic
    return {"pseudotime_spearman": float(rho), "pseudotime_root_domain": str(root),
            "pseudotime_root_wm_share": float((wm & (km == root)).sum() / (km == root).sum())}


def single_slice(sample: str, seeds=(0, 1, 2), use_mclust: bool = True, **overrides) -> list[dict]:
    adata = prepare([sample])
    rows = []
    for seed in seeds:
        res, secs = fit(adata, seed=seed, **overrides)
        row = {"task": "single", "slice": sample, "seed": seed, "seconds": secs,
               "s_per_epoch": res.info["seconds_per_epoch"], "epochs": res.info["epochs"],
               "precision": res.info["precision"], **overrides,
               **score_embedding(adata, res.embedding, seed, use_mclust=use_mclust),
               **pseudotime_spearman(adata, res.embedding, seed)}
        rows.append(row)
        _log(row)
    return rows


def batch_metrics(adata, emb: np.ndarray) -> dict:
    """iLISI (all spots), kBET, graph connectivity and silhouette-batch (labelled spots)."""
    from spatialdomains import metrics as M

    lab = _labelled(adata)
    batch = adata.obs["slice"].astype(str).to_numpy()
    truth = adata.obs["truth"].astype(str).to_numpy()
    return {"ilisi": M.ilisi(emb, batch), "kbet": M.kbet(emb[lab], batch[lab], truth[lab]),
            "graph_connectivity": M.graph_connectivity(emb[lab], truth[lab]),
            "silhouette_batch": M.silhouette_batch(emb[lab], batch[lab], truth[lab])}


def integration(samples=("151673", "151674", "151675", "151676"), seeds=(0, 1, 2), variant: str = "full",
                use_mclust: bool = True, **overrides) -> list[dict]:
    """Joint training; ``variant`` = full | no_pcl | no_ss | no_telescope | concat (no PCL, no SS)."""
    switches = {"full": {}, "no_pcl": {"use_pcl": False}, "no_ss": {"use_ss": False},
                "no_telescope": {"use_sc": False}, "concat": {"use_pcl": False, "use_ss": False}}[variant]
    adata = prepare(list(samples))
    rows = []
    for seed in seeds:
        res, secs = fit(adata, seed=seed, **switches, **overrides)
        emb = res.embedding
        row = {"task": "integration", "variant": variant, "slices": list(samples), "seed": seed,
               "seconds": secs, "n_genes": int(adata.n_vars), "epochs": res.info["epochs"],
               "precision": res.info["precision"], **overrides,
               **score_embedding(adata, emb, seed, use_mclust=use_mclust), **batch_metrics(adata, emb)}
        lab = _labelled(adata)
        km = kmeans_labels(emb, 7, seed)
        per = {}
        for s in samples:
            m = (adata.obs["slice"].astype(str).to_numpy() == s) & lab
            per[s] = ari(adata.obs["truth"].to_numpy()[m], km[m])
        row["ari_kmeans_per_slice_joint"] = per
        rows.append(row)
        _log(row)
    return rows


def imputation(sample: str = "151673", seed: int = 0, frac: float = 0.1, **overrides) -> dict:
    """Hide ``frac`` of the non-zero log1p values, train, compare the decoder output on them."""
    adata = prepare([sample])
    x = np.asarray(adata.X, dtype=np.float32).copy()
    rng = np.random.default_rng(seed)
    nz = np.flatnonzero(x)
    hidden = rng.choice(nz, int(frac * nz.size), replace=False)
    truth = x.flat[hidden].copy()
    x.flat[hidden] = 0.0
    masked = adata.copy()
    masked.X = x
    res, secs = fit(masked, seed=seed, **overrides)
    pred = res.extras["imputed"].flat[hidden]
    # a simple baseline beside "unimputed" (zero): the mean of the spot's spatial neighbours (masked data)
    import scipy.sparse as sp

    adj = sp.csr_matrix(masked.obsp["spatial_connectivities"])
    adj = sp.diags(1.0 / np.maximum(np.asarray(adj.sum(1)).ravel(), 1)) @ adj
    neigh = np.asarray(adj @ x).flat[hidden]
    row = {"task": "imputation", "slice": sample, "seed": seed, "frac": frac, "seconds": secs, **overrides,
           "n_hidden": int(hidden.size),
           "rmse_imputed": float(np.sqrt(np.mean((pred - truth) ** 2))),
           "rmse_zero": float(np.sqrt(np.mean(truth ** 2))),
           "rmse_neighbour_mean": float(np.sqrt(np.mean((neigh - truth) ** 2))),
           "median_l1_imputed": float(np.median(np.abs(pred - truth))),
           "median_l1_zero": float(np.median(np.abs(truth))),
           "median_l1_neighbour_mean": float(np.median(np.abs(neigh - truth))),
           # pseudotime on this run's embedding (trained with the entries hidden), labelled as such
           **{f"masked_{k}": v for k, v in pseudotime_spearman(adata, res.embedding, seed).items()}}
    _log(row)
    return row


def timing(n_spots: int, mode: str, epochs: int = 3, n_genes: int = 3000, n_slices: int = 1, seed: int = 0) -> dict:
    """Seconds per epoch and peak RSS on a synthetic Visium-like group of ``n_spots`` spots."""
    from spatialdomains.models.spotscape import SpotscapeConfig, fit_spotscape
    from spatialdomains.train import TrainOptions

    adata = synthetic_group(n_spots, n_genes, n_slices, seed)
    cfg = SpotscapeConfig(epochs=epochs, batch_mode=mode, impute=False)
    t = time.perf_counter()
    res = fit_spotscape(adata, config=cfg, random_state=seed, n_domains=7, device="cpu",
                        train_options=TrainOptions(epochs=epochs, progress=False))
    hist = res.history
    row = {"task": "timing", "n_spots": n_spots, "n_genes": n_genes, "n_slices": n_slices, "mode": res.info["batch_mode"],
           "epochs": epochs, "s_per_epoch": float(hist["seconds"].iloc[1:].mean() if len(hist) > 1 else hist["seconds"].mean()),
           "total_seconds": time.perf_counter() - t, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "memory_estimate_gb": res.info["memory_estimate_gb"]}
    _log(row)
    return row


def synthetic_group(n_spots: int, n_genes: int, n_slices: int, seed: int):
    """Visium-like hex slices with 7 layered domains and sparse NB-like log1p features."""
    try:
        from spatialdomains.synthetic import make_slice, make_slices  # type: ignore
        from spatialdomains.pp import PrepConfig, prepare_group

        if n_slices == 1:
            slices = [make_slice(n_spots=n_spots, n_domains=7, n_genes=n_genes, random_state=seed)]
        else:
            slices = make_slices(n_slices=n_slices, n_spots=n_spots // n_slices, n_domains=7, n_genes=n_genes,
                                 seed=seed)
        return prepare_group(slices, PrepConfig(n_top_genes=n_genes, normalize_scope="hvg"), platform="visium")
    except ImportError:
        pass
    import anndata as ad
    import scipy.sparse as sp

    from spatialdomains.graph import hex_edges, to_csr

    rng = np.random.default_rng(seed)
    per = n_spots // n_slices
    side = int(np.ceil(np.sqrt(2 * per)))
    rows, cols = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    keep = (rows + cols) % 2 == 0
    xy = np.stack([cols[keep] * 50.0, rows[keep] * 86.6], 1)[:per]
    coords = np.concatenate([xy] * n_slices)
    slice_ids = np.repeat(np.arange(n_slices).astype(str), per)
    domain = np.minimum((coords[:, 1] / coords[:, 1].max() * 7).astype(int), 6)
    means = rng.gamma(0.3, 1.0, size=(7, n_genes))
    lam = means[domain] * rng.gamma(5, 0.2, size=(coords.shape[0], 1))
    counts = sp.csr_matrix(rng.poisson(lam).astype(np.float32))
    x = counts.copy()
    x.data = np.log1p(x.data)
    adata = ad.AnnData(X=x.toarray().astype(np.float32))
    adata.obs["slice"] = slice_ids
    adata.obs["slice"] = adata.obs["slice"].astype("category")
    adata.obsm["spatial"] = coords
    adata.obsp["spatial_connectivities"] = to_csr(hex_edges(coords, slice_ids=slice_ids), coords.shape[0])
    return adata


#: keys of a ``single`` row that are not config overrides
_SINGLE_KEYS = {"task", "slice", "seed", "seconds", "s_per_epoch", "epochs", "precision", "ari_kmeans", "nmi_kmeans",
                "ari_kmeans_cosine", "ari_mclust", "nmi_mclust", "pseudotime_spearman", "pseudotime_root_domain",
                "pseudotime_root_wm_share"}


def summary(path: Path = RESULTS) -> str:
    """Markdown table of the default-config single-slice runs (1000 epochs, no overrides) per slice."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    default = [r for r in rows if r["task"] == "single" and r.get("epochs", 1000) == 1000 and set(r) <= _SINGLE_KEYS]
    out = ["| slice | seeds | ARI k-means (mean ± sd) | ARI k-means on unit rows (the default) | ARI mclust | NMI k-means | "
           "pseudotime Spearman | s per run (min / median) |",
           "|---|---|---|---|---|---|---|---|"]
    for s in sorted({r["slice"] for r in default}):
        rs = [r for r in default if r["slice"] == s]

        def ms(key, rs=rs):
            v = np.array([r[key] for r in rs if key in r], dtype=float)
            return f"{v.mean():.3f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.3f}" if v.size else "-"

        out.append(f"| {s} | {','.join(str(r['seed']) for r in rs)} | {ms('ari_kmeans')} | {ms('ari_kmeans_cosine')} | "
                   f"{ms('ari_mclust')} | "
                   f"{ms('nmi_kmeans')} | {ms('pseudotime_spearman')} | "
                   f"{min(r['seconds'] for r in rs):.0f} / {np.median([r['seconds'] for r in rs]):.0f} |")
    return "\n".join(out) + "\n"


def _log(row: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as fh:
        fh.write(json.dumps(row, default=str) + "\n")
    print(json.dumps(row, default=str), flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("task", choices=["single", "integration", "imputation", "timing", "screen", "summary"])
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--slices", nargs="+", default=["151673"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--variant", default="full")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--no-mclust", action="store_true")
    p.add_argument("--n-spots", type=int, default=10000)
    p.add_argument("--mode", default="full")
    p.add_argument("--set", nargs="*", default=[], help="extra SpotscapeConfig overrides key=value")
    args = p.parse_args(argv)
    from spatialdomains import _logging

    _logging.configure("INFO")
    overrides = {}
    if args.epochs:
        overrides["epochs"] = args.epochs
    if args.lr:
        overrides["lr"] = args.lr
    for kv in args.set:
        k, v = kv.split("=", 1)
        overrides[k] = json.loads(v) if v[:1] in "0123456789-[{tfn" else v
        if isinstance(overrides[k], list):
            overrides[k] = tuple(overrides[k])
    if args.task == "summary":
        table = summary()
        (RESULTS.parent / "spotscape_single.md").write_text(
            "# Spotscape, DLPFC single slices, default config (1000 epochs; k-means and mclust with K = 7)\n\n"
            + table + "\nRows: `spotscape.jsonl` (task `single`, 1000 epochs, no overrides; precision `auto`, which is "
            "bfloat16 products on an avx512_bf16 CPU). Seconds: the fit (training, embedding, imputation) on the "
            "2-core CPU; the minimum is the idle figure, medians include runs that shared the cores with CI.\n")
        print(table)
        return
    if args.task == "screen":
        for s in args.slices:
            adata = prepare([s])
            for seed in args.seeds:
                snaps, res, secs = fit_snapshots(adata, overrides.pop("epochs", 1000), every=args.every, seed=seed,
                                                 **overrides)
                for epoch, emb in snaps:
                    np.save(f"/tmp/spotscape_emb_{s}_{seed}_{epoch}.npy", emb)
                    _log({"task": "screen", "slice": s, "seed": seed, "epoch": epoch, "seconds": secs, **overrides,
                          **score_embedding(adata, emb, seed, use_mclust=not args.no_mclust)})
                overrides["epochs"] = snaps[-1][0]
    elif args.task == "single":
        for s in args.slices:
            single_slice(s, args.seeds, use_mclust=not args.no_mclust, **overrides)
    elif args.task == "integration":
        integration(tuple(args.slices), args.seeds, args.variant, use_mclust=not args.no_mclust, **overrides)
    elif args.task == "imputation":
        imputation(args.slices[0], args.seeds[0], **overrides)
    else:
        timing(args.n_spots, args.mode, epochs=args.epochs or 3)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
