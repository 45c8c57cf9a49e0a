#!/usr/bin/env python
"""Accuracy on real data: DLPFC 151673-151676, our methods beside BANKSY, same files, same metrics.

Never part of ``make test``. For every group (each slice alone, and 151675+151676 jointly) and every
seed, each method in ``RUNNERS`` returns an embedding; the shared protocol then clusters it with R
mclust (EEE, K = 7 = number of annotated layers), optionally refines the labels (15-NN spatial
majority vote within each slice), clusters it with the method's default clustering (what the CLI and
the pipeline run: ``cluster(method="auto")``; for BANKSY mclust, its own recipe), and scores each
against the manual layers (unlabelled spots dropped). Joint groups also get iLISI and BatchKL of the
embedding over the slices. BANKSY runs pybanksy (the ``bench`` extra) with its own DLPFC recipe
(:func:`run_banksy`).

Usage::

    python benchmarks/accuracy.py                       # staig + banksy, 4 slices + joint, seeds 0,1,2
    python benchmarks/accuracy.py --methods staig --slices 151673 --seeds 0 --no-joint
    python benchmarks/accuracy.py --set staig.epochs=300 --set staig.tau=5
    python benchmarks/accuracy.py --image               # STAIG also with lowres-image features
    python benchmarks/accuracy.py --methods staig --image --image-only --tag image

Writes ``<out>/accuracy.json`` (every run plus the mean and sd per method x group x image mode) and
``<out>/accuracy.md`` (the table). Adding a method = one ``run_<name>`` function and one ``RUNNERS``
entry; it receives the raw slices and returns a :class:`MethodOutput`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = (HERE.parent / ".." / "shared" / "bench" / "data").resolve()
DEFAULT_SLICES = ("151673", "151674", "151675", "151676")
DEFAULT_JOINT = ("151675+151676",)
N_DOMAINS = 7  # DLPFC L1-L6 + WM


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------
def load_slice(data_dir: Path, sample: str):
    """One DLPFC slice in the package's AnnData contract (counts in ``layers['counts']``)."""
    import anndata as ad

    path = Path(data_dir) / f"dlpfc_{sample}.h5ad"
    if not path.exists():
        raise SystemExit(f"missing {path}: pass --data with the folder holding dlpfc_<id>.h5ad")
    a = ad.read_h5ad(path)
    a.var_names_make_unique()
    a.layers["counts"] = a.X.copy()
    a.obs["slice"] = sample
    a.obs["truth"] = a.obs["ground_truth"]
    a.obs_names = [f"{sample}_{b}" for b in a.obs_names]
    return a


#: image-feature options (``--image-*`` flags) and the per-spot features already computed, by obs name:
#: BYOL + PCA run once per slice, not once per seed and group.
IMAGE_OPTIONS: dict[str, Any] = {"backbone": "resnet50", "patch_px": 64, "input_px": 64, "epochs": 1}
_IMAGE_CACHE: dict[str, np.ndarray] = {}


def add_image_features(adata) -> None:
    """Per-spot image features from each slice's lowres H&E in ``uns['spatial']`` into ``obsm['X_image']``.

    ``spatialdomains.image.image_features`` per slice (BYOL from random init: no model hub here; PCA per
    slice as the reference), cached by spot so every seed and the joint group reuse them. The DLPFC files
    hold only the 600 px lowres image (a spot patch is ~23 px), so ``patch_px``/``input_px`` default to 64.
    """
    from spatialdomains.image import image_features

    slices = adata.obs["slice"].astype(str).to_numpy()
    for s in dict.fromkeys(slices):
        sub = adata[slices == s].copy()
        if all(name in _IMAGE_CACHE for name in sub.obs_names):
            continue
        t0 = time.perf_counter()
        image_features(sub, library_id=s, **IMAGE_OPTIONS)
        _IMAGE_CACHE.update(zip(sub.obs_names, sub.obsm["X_image"]))
        print(f"image features for {s}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    adata.obsm["X_image"] = np.stack([_IMAGE_CACHE[n] for n in adata.obs_names]).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# methods
# --------------------------------------------------------------------------------------------------
@dataclass
class RunContext:
    seed: int
    device: str
    image: bool
    overrides: dict[str, Any]


@dataclass
class MethodOutput:
    """What a runner returns: spots in the order of the concatenated input slices."""

    embedding: np.ndarray
    obs: Any  # DataFrame with 'slice', 'truth'
    coords: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def run_registered(method: str, slices: list, ctx: RunContext) -> MethodOutput:
    """A registered method through the library: its preprocessing, graph and fit (method defaults)."""
    from spatialdomains.models import get_method
    from spatialdomains.pp import prepare_group
    from spatialdomains.tl import parse_overrides

    spec = get_method(method)
    t0 = time.perf_counter()
    adata = prepare_group(slices, spec.prep_for(len(slices)), platform="visium")
    if ctx.image:
        add_image_features(adata)
    prep_s = time.perf_counter() - t0
    config = parse_overrides(spec.config_class, ctx.overrides)
    t0 = time.perf_counter()
    res = spec.fit(adata, config=config, device=ctx.device, random_state=ctx.seed, n_domains=N_DOMAINS)
    info = {"prepare_seconds": prep_s, "train_seconds": time.perf_counter() - t0, "n_features": int(adata.n_vars),
            **{k: res.info[k] for k in ("variant", "edge_drop_source", "seconds_per_epoch", "device") if k in res.info}}
    if "loss" in res.history:
        info["final_loss"] = float(res.history["loss"].iloc[-1])
    return MethodOutput(res.embedding, adata.obs[["slice", "truth"]].copy(), np.asarray(adata.obsm["spatial"]), info)


def run_staig(slices: list, ctx: RunContext) -> MethodOutput:
    return run_registered("staig", slices, ctx)


def run_spotscape(slices: list, ctx: RunContext) -> MethodOutput:
    return run_registered("spotscape", slices, ctx)


_BANKSY_CACHE: dict[tuple, MethodOutput] = {}


def run_banksy(slices: list, ctx: RunContext) -> MethodOutput:
    """BANKSY's embedding, computed once per group and options (see :func:`banksy_embedding`).

    Its only randomness besides mclust is a randomised 20-component PCA (exact to rounding), so the
    seeds of a group share the embedding and differ in mclust's seed, which :func:`score` sets.
    """
    key = (tuple(str(a.obs["slice"].iloc[0]) for a in slices), tuple(sorted(ctx.overrides.items())))
    if key not in _BANKSY_CACHE:
        _BANKSY_CACHE[key] = banksy_embedding(slices, ctx)
    return _BANKSY_CACHE[key]


def banksy_embedding(slices: list, ctx: RunContext) -> MethodOutput:
    """BANKSY (pybanksy from PyPI) with its own DLPFC recipe: lambda 0.2, k_geom 18, AGF (max_m 1), PCA 20.

    Expression: every gene of the file (the DLPFC files hold 5000 preselected genes), ``normalize_total``
    (target 1e4) and no log, as BANKSY's DLPFC example; the shared protocol then clusters the 20 PCs
    with mclust K = 7. ``--set banksy.lambda=0.8`` (its cell-typing -> domain setting),
    ``banksy.n_top_genes=2000`` (seurat_v3 HVGs from counts) and ``banksy.log1p=true`` give the other
    recipes. Several slices are placed side by side far apart, so no spatial neighbourhood crosses slices.
    """
    import contextlib
    import io

    import anndata as ad
    import scanpy as sc
    from banksy.embed_banksy import generate_banksy_matrix
    from banksy.initialize_banksy import initialize_banksy
    from banksy_utils.umap_pca import pca_umap

    lam = float(ctx.overrides.get("lambda", 0.2))
    k_geom = int(ctx.overrides.get("k_geom", 18))
    n_pcs = int(ctx.overrides.get("pca_dims", 20))
    n_hvg = int(ctx.overrides.get("n_top_genes", 0))
    log1p = str(ctx.overrides.get("log1p", "false")).lower() in ("1", "true", "yes")
    t0 = time.perf_counter()
    parts = []
    offset = 0.0
    for a in slices:
        a = a.copy()
        a.X = a.layers["counts"].copy()
        if n_hvg:
            sc.pp.highly_variable_genes(a, n_top_genes=n_hvg, flavor="seurat_v3")
        else:
            a.var["highly_variable"] = True
        xy = np.asarray(a.obsm["spatial"], dtype=np.float64).copy()
        xy[:, 0] += offset - xy[:, 0].min()
        offset = xy[:, 0].max() + 1e6
        a.obsm["coord_xy"] = xy
        parts.append(a)
    genes = parts[0].var_names[parts[0].var["highly_variable"].to_numpy()]
    for a in parts[1:]:
        genes = genes.intersection(a.var_names[a.var["highly_variable"].to_numpy()])
    adata = ad.concat([a[:, genes].copy() for a in parts], join="inner", merge="same")
    adata.obsm["coord_xy"] = np.concatenate([a.obsm["coord_xy"] for a in parts])
    sc.pp.normalize_total(adata, target_sum=1e4)
    if log1p:
        sc.pp.log1p(adata)
    adata.obs["xcoord"] = adata.obsm["coord_xy"][:, 0]
    adata.obs["ycoord"] = adata.obsm["coord_xy"][:, 1]
    np.random.seed(ctx.seed)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        banksy_dict = initialize_banksy(adata, ("xcoord", "ycoord", "coord_xy"), num_neighbours=k_geom,
                                        nbr_weight_decay="scaled_gaussian", max_m=1, plt_edge_hist=False,
                                        plt_nbr_weights=False, plt_agf_angles=False, plt_theta=False)
        banksy_dict, _ = generate_banksy_matrix(adata, banksy_dict, [lam], 1, verbose=False)
        pca_umap(banksy_dict, pca_dims=[n_pcs], add_umap=False, plt_remaining_var=False)
    bm = banksy_dict["scaled_gaussian"][lam]["adata"]
    key = f"reduced_pc_{n_pcs}"
    emb = np.asarray(bm.obsm[key], dtype=np.float32)
    info = {"train_seconds": time.perf_counter() - t0, "lambda": lam, "k_geom": k_geom, "pca_dims": n_pcs,
            "n_features": int(len(genes)), "log1p": log1p}
    obs = adata.obs[["slice", "truth"]].copy()
    return MethodOutput(emb, obs, np.asarray(slices_coords(slices)), info)


def slices_coords(slices: list) -> np.ndarray:
    return np.concatenate([np.asarray(a.obsm["spatial"], dtype=np.float64) for a in slices])


#: method name -> runner(slices, ctx) -> MethodOutput.
RUNNERS: dict[str, Callable[[list, RunContext], MethodOutput]] = {
    "staig": run_staig,
    "spotscape": run_spotscape,
    "banksy": run_banksy,
}
#: methods that can use the image features (the others ignore --image)
IMAGE_METHODS = {"staig"}


# --------------------------------------------------------------------------------------------------
# shared protocol: cluster, refine, score
# --------------------------------------------------------------------------------------------------
def default_clustering(method: str) -> str:
    """The clustering ``cluster(method="auto")`` runs on this method's embedding (BANKSY: mclust, its recipe)."""
    from spatialdomains.cluster import resolve_algorithm

    return resolve_algorithm("auto", f"X_{method}")


def default_labels(embedding: np.ndarray, method: str, seed: int) -> np.ndarray:
    """Labels of ``spatialdomains.cluster.cluster`` with its default (``auto``) on this method's embedding."""
    import anndata as ad
    import pandas as pd

    from spatialdomains.cluster import cluster

    a = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(len(embedding))]))
    a.obsm[f"X_{method}"] = np.asarray(embedding)
    cluster(a, N_DOMAINS, use_rep=f"X_{method}", random_state=seed)
    return a.obs[f"domain_{method}"].astype(int).to_numpy()


def score(out: MethodOutput, seed: int, method: str = "") -> dict[str, Any]:
    from spatialdomains import metrics
    from spatialdomains.cluster import kmeans as kmeans_fn, mclust, refine_labels

    slices = out.obs["slice"].astype(str).to_numpy()
    truth = out.obs["truth"]
    lab = truth.notna().to_numpy()
    t0 = time.perf_counter()
    labels = mclust(out.embedding, N_DOMAINS, random_state=2023 + seed)
    refined = refine_labels(labels, out.coords, n_neighbors=15, slice_ids=slices)
    kmeans = kmeans_fn(out.embedding, N_DOMAINS, random_state=seed)  # Spotscape's paper evaluates with k-means
    default = default_clustering(method)
    auto = labels if default == "mclust" else default_labels(out.embedding, method, 2023 + seed)
    res: dict[str, Any] = {"cluster_seconds": time.perf_counter() - t0, "n_spots": int(len(labels)),
                           "n_labelled": int(lab.sum()), "default_clustering": default}
    t = truth.astype(str).to_numpy()
    for name, pred in (("", labels), ("refined_", refined), ("kmeans_", kmeans), ("default_", auto)):
        res[f"{name}ari"] = metrics.ari(t[lab], pred[lab])
        res[f"{name}nmi"] = metrics.nmi(t[lab], pred[lab])
    uniq = list(dict.fromkeys(slices))
    if len(uniq) > 1:
        for s in uniq:
            m = lab & (slices == s)
            res[f"ari_{s}"] = metrics.ari(t[m], labels[m])
            res[f"refined_ari_{s}"] = metrics.ari(t[m], refined[m])
        res["ilisi"] = metrics.ilisi(out.embedding, slices)
        res["batch_kl"] = metrics.batch_kl(out.embedding, slices)
    return res


def summarise(runs: list[dict]) -> list[dict]:
    keys = sorted({(r["method"], r["group"], r["image"]) for r in runs})
    rows = []
    for method, group, image in keys:
        sel = [r for r in runs if (r["method"], r["group"], r["image"]) == (method, group, image)]
        row: dict[str, Any] = {"method": method, "group": group, "image": image, "n_seeds": len(sel)}
        for metric in sorted({k for r in sel for k, v in r.items() if isinstance(v, (int, float))
                              and not isinstance(v, bool) and k not in ("seed",)}):
            vals = np.array([r[metric] for r in sel if metric in r], dtype=float)
            row[f"{metric}_mean"] = float(vals.mean())
            row[f"{metric}_sd"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    def cell(r, k, fmt="{:.3f}"):
        if f"{k}_mean" not in r:
            return ""
        return (fmt + " ± " + fmt).format(r[f"{k}_mean"], r[f"{k}_sd"])

    lines = ["| method | image | group | seeds | ARI (mclust) | ARI refined | ARI default clustering | NMI | "
             "NMI refined | iLISI | BatchKL | train s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {'yes' if r['image'] else 'no'} | {r['group']} | {r['n_seeds']} | "
                     f"{cell(r, 'ari')} | {cell(r, 'refined_ari')} | {cell(r, 'default_ari')} | {cell(r, 'nmi')} | "
                     f"{cell(r, 'refined_nmi')} | "
                     f"{cell(r, 'ilisi', '{:.2f}')} | {cell(r, 'batch_kl', '{:.3f}')} | {cell(r, 'train_seconds', '{:.0f}')} |")
    single = [r for r in rows if "+" not in r["group"]]
    meds = []
    for method in sorted({r["method"] for r in single}):
        for image in sorted({r["image"] for r in single if r["method"] == method}):
            vals = [r["refined_ari_mean"] for r in single if r["method"] == method and r["image"] == image]
            raw = [r["ari_mean"] for r in single if r["method"] == method and r["image"] == image]
            dflt = [r.get("default_ari_mean", np.nan) for r in single if r["method"] == method and r["image"] == image]
            meds.append(f"| {method} | {'yes' if image else 'no'} | {len(vals)} | {np.median(raw):.3f} | "
                        f"{np.median(vals):.3f} | {min(vals):.3f} | {np.median(dflt):.3f} |")
    if meds:
        lines += ["", "Median over single slices (of the per-slice mean over seeds):", "",
                  "| method | image | slices | median ARI | median ARI refined | worst slice ARI refined | "
                  "median ARI default clustering |", "|---|---|---|---|---|---|---|", *meds]
    return "\n".join(lines) + "\n"


def parse_sets(items: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, _, value = item.partition("=")
        method, _, param = key.partition(".")
        if not param or not value:
            raise SystemExit(f"--set expects method.param=value, got {item!r}")
        out.setdefault(method, {})[param] = value
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with dlpfc_<id>.h5ad (read in place)")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--methods", default=",".join(RUNNERS))
    p.add_argument("--slices", default=",".join(DEFAULT_SLICES))
    p.add_argument("--joint", default=",".join(DEFAULT_JOINT), help="groups like 151675+151676")
    p.add_argument("--no-joint", action="store_true")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--device", default="auto")
    p.add_argument("--image", action="store_true", help="also run image-capable methods with image features")
    p.add_argument("--image-only", action="store_true", help="with --image: skip the gene-only runs")
    p.add_argument("--image-backbone", default=IMAGE_OPTIONS["backbone"])
    p.add_argument("--image-px", type=int, default=IMAGE_OPTIONS["input_px"], help="patch and network input size")
    p.add_argument("--image-epochs", type=int, default=IMAGE_OPTIONS["epochs"], help="BYOL epochs")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.PARAM=VALUE",
                   help="override a method parameter (repeatable)")
    p.add_argument("--tag", default="", help="suffix of the output file names")
    args = p.parse_args(argv)

    from spatialdomains import _logging

    _logging.configure("WARNING")
    warnings.filterwarnings("ignore")
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(RUNNERS))
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; available: {sorted(RUNNERS)}")
    overrides = parse_sets(args.set)
    groups = [[s] for s in args.slices.split(",") if s]
    if not args.no_joint:
        groups += [g.split("+") for g in args.joint.split(",") if g]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    images = ([] if args.image and args.image_only else [False]) + ([True] if args.image else [])
    IMAGE_OPTIONS.update(backbone=args.image_backbone, patch_px=args.image_px, input_px=args.image_px,
                         epochs=args.image_epochs)
    cache: dict[str, Any] = {}
    runs: list[dict] = []
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = f"_{args.tag}" if args.tag else ""
    json_path = args.out / f"accuracy{suffix}.json"
    for group in groups:
        for s in group:
            if s not in cache:
                cache[s] = load_slice(args.data, s)
        name = "+".join(group)
        for method in methods:
            for image in images:
                if image and method not in IMAGE_METHODS:
                    continue
                for seed in seeds:
                    ctx = RunContext(seed=seed, device=args.device, image=image, overrides=overrides.get(method, {}))
                    t0 = time.perf_counter()
                    out = RUNNERS[method]([cache[s].copy() for s in group], ctx)
                    rec = {"method": method, "group": name, "image": image, "seed": seed, **out.info,
                           **score(out, seed, method), "total_seconds": time.perf_counter() - t0,
                           "overrides": overrides.get(method, {})}
                    runs.append(rec)
                    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rec.items()}),
                          flush=True)
                    _write(json_path, runs, args)
    rows = summarise(runs)
    _write(json_path, runs, args, rows)
    from spatialdomains._utils import write_text_atomic

    table = markdown(rows)
    write_text_atomic(args.out / f"accuracy{suffix}.md", "# DLPFC accuracy\n\n" + table)
    print(table)
    return 0


def _write(path: Path, runs: list[dict], args, rows: list[dict] | None = None) -> None:
    from spatialdomains._utils import package_version, write_json_atomic

    payload = {"data": str(args.data), "n_domains": N_DOMAINS, "protocol": "mclust EEE K=7 (R seed 2023+seed); "
               "refined = 15-NN spatial majority vote per slice; unlabelled spots dropped before scoring; "
               "kmeans_* = sklearn KMeans K=7 on the embedding; default_* = spatialdomains.cluster.cluster with "
               "its default (auto: the method's registered clustering; mclust for BANKSY), seed 2023+seed",
               "version": package_version(), "host": os.uname().nodename, "threads": _threads(),
               "image_options": IMAGE_OPTIONS, "runs": runs, "summary": rows or summarise(runs)}
    write_json_atomic(path, payload)


def _threads() -> int:
    try:
        import torch

        return int(torch.get_num_threads())
    except Exception:  # pragma: no cover
        return -1


if __name__ == "__main__":
    sys.exit(main())
