#!/usr/bin/env python
"""Which defaults win on DLPFC: fit each (method, slice, seed) once, then compare clusterings and ensembles.

Never part of ``make test``. Fitting is the expensive part, so every embedding is fitted once with the
method's defaults (plus any ``--set`` overrides, which become part of the cache key) and cached as an
``.npz`` under ``--cache``; every clustering variant, the seed consensus and the label-free temperature
criterion are then computed from the cached embeddings, never by refitting.

Subcommands::

    python benchmarks/defaults.py fit --methods staig,spotscape --slices 151673 --seeds 0,1,2
    python benchmarks/defaults.py fit --methods staig --seeds 0 --set staig.tau=35     # grid point
    python benchmarks/defaults.py cluster      # mclust / k-means / k-means on unit rows / Leiden-to-K
    python benchmarks/defaults.py consensus    # consensus of 3 and 5 seeds vs the mean single seed
    python benchmarks/defaults.py temperature  # STAIG tau grid: label-free criteria vs ARI
    python benchmarks/defaults.py table        # defaults (and their 3-seed consensus) beside BANKSY
    python benchmarks/defaults.py compare --other /tmp/defaults-cache-post   # same runs, two code versions

Results: ``benchmarks/results/defaults_<subcommand>.{json,md}`` (``table``: ``defaults_vs_banksy``). Scoring is that of
``benchmarks/accuracy.py`` (K = 7, unlabelled spots dropped before scoring, ARI against the manual layers).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from accuracy import DEFAULT_DATA, DEFAULT_SLICES, N_DOMAINS, RunContext, load_slice, parse_sets  # noqa: E402

DEFAULT_CACHE = Path("/tmp/defaults-cache")
SEEDLESS = {"banksy"}  #: methods whose embedding is fitted once (seed 0) and reused by the other seeds
RESULTS = HERE / "results"


# --------------------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------------------
def cache_name(method: str, sample: str, seed: int, overrides: dict[str, str]) -> str:
    tag = "".join(f"_{k}{v}" for k, v in sorted(overrides.items()))
    return f"{method}_{sample}_s{seed}{tag}.npz"


def fit_one(method: str, sample: str, seed: int, overrides: dict[str, str], data: Path, cache: Path) -> Path:
    """Fit ``method`` on one slice through the library (its preprocessing, graph, config) and cache it."""
    from accuracy import RUNNERS

    path = cache / cache_name(method, sample, seed, overrides)
    if path.exists():
        return path
    first = cache / cache_name(method, sample, 0, overrides)
    if method in SEEDLESS and seed != 0 and first.exists():
        # BANKSY's embedding does not depend on the seed (its PCA is randomised SVD of 20 components, exact
        # to rounding); its seeds differ only in mclust's seed, which the clustering step sets per seed.
        z = load(first)
        info = {**z["info"], "seed": seed, "embedding_from_seed": 0}
        np.savez_compressed(path, **{k: v for k, v in z.items() if k != "info"}, info=json.dumps(info))
        return path
    a = load_slice(data, sample)
    t0 = time.perf_counter()
    out = RUNNERS[method]([a], RunContext(seed=seed, device="cpu", image=False, overrides=overrides))
    seconds = time.perf_counter() - t0
    info = {**out.info, "method": method, "slice": sample, "seed": seed, "overrides": overrides,
            "total_seconds": seconds}
    truth = out.obs["truth"]
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, embedding=np.asarray(out.embedding, dtype=np.float32),
                        truth=np.where(truth.notna(), truth.astype(str), "").astype(str),
                        coords=np.asarray(out.coords, dtype=np.float64),
                        loss=np.asarray(out.info.get("final_loss", np.nan), dtype=float),
                        info=json.dumps(info))
    tmp.rename(path)
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in info.items()}), flush=True)
    return path


def load(path: Path) -> dict[str, Any]:
    z = np.load(path, allow_pickle=False)
    out = {k: z[k] for k in z.files}
    out["info"] = json.loads(str(out["info"]))
    return out


def cached(cache: Path, method: str, sample: str, seeds, overrides: dict[str, str] | None = None) -> list[dict]:
    found = []
    for seed in seeds:
        p = cache / cache_name(method, sample, seed, overrides or {})
        if p.exists():
            found.append(load(p))
    return found


# --------------------------------------------------------------------------------------------------
# clustering variants (all on a cached embedding)
# --------------------------------------------------------------------------------------------------
def unit_rows(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def cluster_variants(X: np.ndarray, seed: int, k: int = N_DOMAINS) -> dict[str, np.ndarray]:
    """Every clustering the comparison covers; the seed is the run's seed (R seed 2023 + seed)."""
    from spatialdomains import cluster as C

    out = {}
    for name, fn in (("mclust", lambda: C.mclust(X, k, random_state=2023 + seed)),
                     ("kmeans", lambda: C.kmeans(X, k, random_state=seed)),
                     ("kmeans_unit", lambda: C.kmeans(unit_rows(X), k, random_state=seed)),
                     ("mclust_unit", lambda: C.mclust(unit_rows(X), k, random_state=2023 + seed)),
                     ("leiden_k", lambda: leiden_to_k(X, k, seed))):
        t0 = time.perf_counter()
        try:
            out[name] = fn()
        except Exception as err:  # one failing variant must not stop the comparison
            print(f"{name}: {type(err).__name__}: {err}", file=sys.stderr)
            continue
        out[name + "_seconds"] = time.perf_counter() - t0
    return out


def leiden_to_k(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Leiden on the 15-NN graph of the embedding, resolution bisected until it gives ``k`` communities."""
    from spatialdomains.cluster import leiden

    lo, hi = 0.01, 3.0
    best = None
    for _ in range(20):
        res = (lo + hi) / 2
        lab = leiden(X, res, random_state=seed, neighbors_method="gauss")
        n = int(lab.max()) + 1
        if best is None or abs(n - k) < abs(int(best.max()) + 1 - k):
            best = lab
        if n == k:
            return lab
        lo, hi = (res, hi) if n < k else (lo, res)
    return best


def ari_on_labelled(truth: np.ndarray, pred: np.ndarray) -> float:
    from spatialdomains.metrics import ari

    lab = truth != ""
    return ari(truth[lab], np.asarray(pred)[lab])


def labels_for(cache: Path, npz: Path, data: dict) -> dict[str, np.ndarray]:
    """Every clustering variant of one cached embedding, itself cached next to it (``labels/``)."""
    out_path = cache / "labels" / npz.name
    if out_path.exists():
        z = np.load(out_path)
        return {k: z[k] for k in z.files}
    labels = cluster_variants(data["embedding"], int(data["info"]["seed"]))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_path, **{k: np.asarray(v) for k, v in labels.items()})
    return labels


VARIANTS = ("mclust", "kmeans", "kmeans_unit", "mclust_unit", "leiden_k")


def each_cached(cache: Path, method: str, sample: str, seeds, overrides=None):
    for seed in seeds:
        npz = cache / cache_name(method, sample, seed, overrides or {})
        if npz.exists():
            data = load(npz)
            yield seed, data, labels_for(cache, npz, data)


# --------------------------------------------------------------------------------------------------
# consensus of several seeds
# --------------------------------------------------------------------------------------------------
def consensus_majority(label_sets: list[np.ndarray], k: int) -> np.ndarray:
    """The shipped consensus (:func:`spatialdomains.consensus.consensus_labels`)."""
    from spatialdomains.consensus import consensus_labels

    return consensus_labels(label_sets)["labels"]


def consensus_coassoc_kmeans(label_sets: list[np.ndarray], k: int) -> np.ndarray:
    """k-means on the concatenated one-hot labellings: squared distance = 2 (S - co-assignments)."""
    from spatialdomains.cluster import kmeans

    onehot = np.concatenate([np.eye(int(lab.max()) + 1)[lab] for lab in label_sets], axis=1)
    return kmeans(onehot, k, random_state=0)


def consensus_coassoc_average(label_sets: list[np.ndarray], k: int) -> np.ndarray:
    """Evidence accumulation: average-linkage tree of 1 - co-association, cut at ``k`` (N x N: benchmark only)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    onehot = np.concatenate([np.eye(int(lab.max()) + 1)[lab] for lab in label_sets], axis=1)
    co = onehot @ onehot.T / len(label_sets)
    dist = squareform(1.0 - co, checks=False)
    return fcluster(linkage(dist, "average"), k, criterion="maxclust") - 1


CONSENSUS = {"majority": consensus_majority, "coassoc_kmeans": consensus_coassoc_kmeans,
             "coassoc_average": consensus_coassoc_average}


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------
def write_results(name: str, payload: dict, text: str) -> None:
    """``benchmarks/results/<name>.json`` (with the protocol) and ``<name>.md``; the table is printed too."""
    from spatialdomains._utils import write_json_atomic, write_text_atomic

    write_json_atomic(RESULTS / f"{name}.json", {"protocol": PROTOCOL, **payload})
    write_text_atomic(RESULTS / f"{name}.md", text)
    print(text)


def cmd_cluster(args) -> None:
    """ARI of every clustering variant on every cached default embedding; table per method."""
    runs = []
    for method in args.methods.split(","):
        for sample in args.slices.split(","):
            for seed, data, labels in each_cached(args.cache, method, sample, range(args.max_seed)):
                row = {"method": method, "slice": sample, "seed": seed}
                for v in VARIANTS:
                    if v in labels:
                        row[v] = ari_on_labelled(data["truth"], labels[v])
                        row[v + "_seconds"] = float(labels[v + "_seconds"])
                runs.append(row)
                print(json.dumps(row), flush=True)
    summary = summarise_variants(runs, VARIANTS)
    write_results("defaults_cluster", {"runs": runs, "summary": summary}, cluster_markdown(summary, VARIANTS))


PROTOCOL = ("DLPFC 151673-151676, each method's default preprocessing/graph/config, one cached embedding per "
            "(method, slice, seed); K = 7; unlabelled spots dropped before scoring; mclust = R mclust EEE "
            "(seed 2023 + seed); kmeans = sklearn KMeans n_init 10; *_unit = on the L2-normalised embedding; "
            "leiden_k = Leiden on the 15-NN (gauss) graph, resolution bisected to 7 communities")


def summarise_variants(runs: list[dict], variants) -> list[dict]:
    rows = []
    for method in dict.fromkeys(r["method"] for r in runs):
        for sample in dict.fromkeys(r["slice"] for r in runs if r["method"] == method):
            sel = [r for r in runs if r["method"] == method and r["slice"] == sample]
            row = {"method": method, "slice": sample, "n_seeds": len(sel)}
            for v in variants:
                vals = [r[v] for r in sel if v in r]
                if vals:
                    row[v] = float(np.mean(vals))
                    row[v + "_sd"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
            rows.append(row)
    return rows


def cluster_markdown(summary: list[dict], variants) -> str:
    head = "| method | slice | seeds | " + " | ".join(variants) + " |"
    lines = ["# Clustering of each method's default embedding (ARI, mean ± sd over seeds)", "", PROTOCOL, "",
             head, "|" + "---|" * (3 + len(variants))]
    for r in summary:
        cells = [f"{r[v]:.3f} ± {r[v + '_sd']:.3f}" if v in r else "" for v in variants]
        lines.append(f"| {r['method']} | {r['slice']} | {r['n_seeds']} | " + " | ".join(cells) + " |")
    lines += ["", "Median over slices of the per-slice mean:", "", "| method | " + " | ".join(variants) + " |",
              "|---|" + "---|" * len(variants)]
    for method in dict.fromkeys(r["method"] for r in summary):
        sel = [r for r in summary if r["method"] == method]
        cells = [f"{np.median([r[v] for r in sel if v in r]):.3f}" if any(v in r for r in sel) else ""
                 for v in variants]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def cmd_consensus(args) -> None:
    """Consensus of the first 3 and 5 seeds vs the mean single seed, per clustering variant."""
    rows = []
    for method in args.methods.split(","):
        for sample in args.slices.split(","):
            cached_runs = list(each_cached(args.cache, method, sample, range(args.max_seed)))
            for n in (3, 5):
                if len(cached_runs) < n:
                    continue
                sub = cached_runs[:n]
                truth = sub[0][1]["truth"]
                for v in args.variants.split(","):
                    sets = [lab[v] for _, _, lab in sub if v in lab]
                    if len(sets) < n:
                        continue
                    singles = [ari_on_labelled(truth, s) for s in sets]
                    row = {"method": method, "slice": sample, "n_seeds": n, "clustering": v,
                           "single_mean": float(np.mean(singles)), "single_min": float(np.min(singles)),
                           "single_max": float(np.max(singles))}
                    for name, fn in CONSENSUS.items():
                        t0 = time.perf_counter()
                        row[name] = ari_on_labelled(truth, fn([np.asarray(s) for s in sets], N_DOMAINS))
                        row[name + "_seconds"] = time.perf_counter() - t0
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    lines = ["# Seed consensus vs single seeds (ARI)", "", PROTOCOL, "",
             "Consensus of the labellings of seeds 0..n-1 (same clustering); `majority` = the shipped consensus "
             "(Hungarian alignment to the medoid seed, majority vote); `coassoc_kmeans` = k-means on the "
             "concatenated one-hot labellings (co-association distance); `coassoc_average` = average-linkage "
             "tree of 1 - co-association.", "",
             "| method | slice | seeds | clustering | mean single | min-max single | majority | coassoc_kmeans | "
             "coassoc_average |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['slice']} | {r['n_seeds']} | {r['clustering']} | {r['single_mean']:.3f} | "
                     f"{r['single_min']:.3f}-{r['single_max']:.3f} | {r['majority']:.3f} | {r['coassoc_kmeans']:.3f} "
                     f"| {r['coassoc_average']:.3f} |")
    lines += ["", "Median over slices:", "", "| method | seeds | clustering | mean single | majority | coassoc_kmeans | "
              "coassoc_average |", "|---|---|---|---|---|---|---|"]
    for key in dict.fromkeys((r["method"], r["n_seeds"], r["clustering"]) for r in rows):
        sel = [r for r in rows if (r["method"], r["n_seeds"], r["clustering"]) == key]
        med = {c: np.median([r[c] for r in sel]) for c in ("single_mean", *CONSENSUS)}
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {med['single_mean']:.3f} | {med['majority']:.3f} | "
                     f"{med['coassoc_kmeans']:.3f} | {med['coassoc_average']:.3f} |")
    write_results("defaults_consensus", {"rows": rows}, "\n".join(lines) + "\n")


def cmd_temperature(args) -> None:
    """STAIG tau grid: does a label-free criterion pick a tau that beats the fixed default?"""
    from spatialdomains.metrics import davies_bouldin, silhouette

    grid = [float(t) for t in args.grid.split(",")]
    default_tau = 20.0
    clustering = args.clustering
    rows = []
    for sample in args.slices.split(","):
        for tau in grid:
            over = {} if tau == default_tau else {"tau": f"{tau:g}"}
            fits = list(each_cached(args.cache, "staig", sample, range(args.max_seed), over))
            fits = [f for f in fits if f[0] in (0, 1)]  # the grid points have seeds 0 (and 1)
            if not fits:
                continue
            seed, data, labels = fits[0]
            X = data["embedding"]
            lab = labels[clustering]
            row = {"slice": sample, "tau": tau, "seed": seed, "ari": ari_on_labelled(data["truth"], lab),
                   "silhouette": silhouette(X, lab, random_state=0), "silhouette_cosine": silhouette(unit_rows(X), lab, random_state=0),
                   "davies_bouldin": davies_bouldin(X, lab), "final_loss": float(data["info"].get("final_loss", np.nan))}
            if len(fits) > 1:
                from spatialdomains.metrics import ari

                row["seed_ari"] = ari(fits[0][2][clustering], fits[1][2][clustering])
                row["ari_seed1"] = ari_on_labelled(fits[1][1]["truth"], fits[1][2][clustering])
            rows.append(row)
            print(json.dumps(row), flush=True)
    criteria = {"silhouette": max, "silhouette_cosine": max, "davies_bouldin": min, "seed_ari": max}
    picks = []
    for sample in dict.fromkeys(r["slice"] for r in rows):
        sel = [r for r in rows if r["slice"] == sample]
        fixed = [r for r in sel if r["tau"] == default_tau]
        pick = {"slice": sample, "fixed": fixed[0]["ari"] if fixed else None,
                "oracle": max(r["ari"] for r in sel), "oracle_tau": max(sel, key=lambda r: r["ari"])["tau"]}
        for crit, best in criteria.items():
            cand = [r for r in sel if crit in r]
            if len(cand) == len(sel):
                chosen = best(cand, key=lambda r: r[crit])
                pick[crit] = chosen["ari"]
                pick[crit + "_tau"] = chosen["tau"]
        picks.append(pick)
    lines = ["# STAIG temperature: label-free choice from a grid vs the fixed default (tau = 20)", "", PROTOCOL, "",
             f"Clustering: {clustering}. One seed (0) per grid point; `seed_ari` = ARI between seeds 0 and 1 "
             "where both exist.", "", "| slice | tau | ARI | silhouette | silhouette (cosine) | Davies-Bouldin | "
             "final loss | seed ARI |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['slice']} | {r['tau']:g} | {r['ari']:.3f} | {r['silhouette']:.3f} | "
                     f"{r['silhouette_cosine']:.3f} | {r['davies_bouldin']:.3f} | {r['final_loss']:.4f} | "
                     f"{r['seed_ari']:.3f} |" if "seed_ari" in r else
                     f"| {r['slice']} | {r['tau']:g} | {r['ari']:.3f} | {r['silhouette']:.3f} | "
                     f"{r['silhouette_cosine']:.3f} | {r['davies_bouldin']:.3f} | {r['final_loss']:.4f} | |")
    names = [c for c in criteria if all(c in p for p in picks)]
    lines += ["", "ARI of the tau each criterion picks per slice (tau in brackets):", "",
              "| slice | fixed tau 20 | best tau (labels, oracle) | " + " | ".join(names) + " |",
              "|---|---|---|" + "---|" * len(names)]
    for p_ in picks:
        fixed = "" if p_["fixed"] is None else f"{p_['fixed']:.3f}"
        lines.append(f"| {p_['slice']} | {fixed} | {p_['oracle']:.3f} ({p_['oracle_tau']:g}) | "
                     + " | ".join(f"{p_[c]:.3f} ({p_[c + '_tau']:g})" for c in names) + " |")
    if picks and all(p_["fixed"] is not None for p_ in picks):
        lines.append("| mean | " + f"{np.mean([p_['fixed'] for p_ in picks]):.3f} | "
                     f"{np.mean([p_['oracle'] for p_ in picks]):.3f} | "
                     + " | ".join(f"{np.mean([p_[c] for p_ in picks]):.3f}" for c in names) + " |")
    write_results("defaults_temperature", {"rows": rows, "picks": picks}, "\n".join(lines) + "\n")


def default_variant(method: str) -> str:
    """The ``VARIANTS`` name of what ``cluster(method="auto")`` runs on this method's embedding."""
    from spatialdomains.cluster import resolve_algorithm

    name = resolve_algorithm("auto", f"X_{method}")
    return name.replace("_cosine", "_unit")


def cmd_table(args) -> None:
    """Each method with its defaults (default clustering; 3-seed consensus) beside BANKSY, per slice."""
    seeds = range(args.seeds)
    rows = []
    for method in args.methods.split(","):
        variant = "mclust" if method == "banksy" else default_variant(method)
        for sample in args.slices.split(","):
            runs = list(each_cached(args.cache, method, sample, seeds))
            if len(runs) < args.seeds:
                continue
            truth = runs[0][1]["truth"]
            singles = [ari_on_labelled(truth, lab[variant]) for _, _, lab in runs]
            cons = consensus_majority([np.asarray(lab[variant]) for _, _, lab in runs], N_DOMAINS)
            rows.append({"method": method, "slice": sample, "clustering": variant, "n_seeds": len(runs),
                         "ari_seeds": singles, "ari_mean": float(np.mean(singles)),
                         "ari_sd": float(np.std(singles, ddof=1)), "ari_consensus": ari_on_labelled(truth, cons),
                         "train_seconds": float(np.mean([d["info"].get("train_seconds", np.nan) for _, d, _ in runs]))})
    banksy = {r["slice"]: r["ari_mean"] for r in rows if r["method"] == "banksy"}
    lines = ["# Defaults vs BANKSY on DLPFC (ARI, same files, same scoring, same session)", "", PROTOCOL, "",
             f"Seeds 0..{args.seeds - 1}. Each method clustered with its default (`cluster_algorithm=auto`; "
             "BANKSY: mclust, its DLPFC recipe); `consensus` = the seeds' consensus labels "
             "(`spatialdomains consensus`). Train seconds on the shared 2-core CPU (one thread, nice 10, load "
             "~20): not comparable with idle figures.", "",
             "| method | clustering | slice | ARI per seed | mean ± sd | consensus | BANKSY mean | >= BANKSY | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = banksy.get(r["slice"])
        ok = "" if b is None or r["method"] == "banksy" else ("yes" if r["ari_consensus"] >= b else "no")
        lines.append(f"| {r['method']} | {r['clustering']} | {r['slice']} | "
                     f"{' / '.join(f'{v:.3f}' for v in r['ari_seeds'])} | {r['ari_mean']:.3f} ± {r['ari_sd']:.3f} | "
                     f"{r['ari_consensus']:.3f} | {'' if b is None else f'{b:.3f}'} | {ok} | {r['train_seconds']:.0f} |")
    lines += ["", "| method | median of per-slice mean | median consensus | worst slice (consensus) |", "|---|---|---|---|"]
    for method in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == method]
        lines.append(f"| {method} | {np.median([r['ari_mean'] for r in sel]):.3f} | "
                     f"{np.median([r['ari_consensus'] for r in sel]):.3f} | {min(r['ari_consensus'] for r in sel):.3f} |")
    write_results("defaults_vs_banksy", {"rows": rows}, "\n".join(lines) + "\n")


def cmd_compare(args) -> None:
    """Embeddings of the same (method, slice, seed) fitted by two code versions: equal, and their ARIs."""
    rows = []
    for npz in sorted(args.other.glob("*.npz")):
        mine = args.cache / npz.name
        if not mine.exists():
            continue
        a, b = load(mine), load(npz)
        ea, eb = a["embedding"].astype(np.float64), b["embedding"].astype(np.float64)
        seed = int(a["info"]["seed"])
        row = {"run": npz.stem, "shape": list(ea.shape), "bitwise_equal": bool(np.array_equal(a["embedding"], b["embedding"])),
               "max_abs_diff": float(np.abs(ea - eb).max()) if ea.shape == eb.shape else None,
               "max_abs_value": float(np.abs(ea).max())}
        lab_a, lab_b = labels_for(args.cache, mine, a), cluster_variants(b["embedding"], seed)
        for v in ("mclust", "kmeans", "kmeans_unit"):
            row[f"{v}_{args.cache_label}"] = ari_on_labelled(a["truth"], lab_a[v])
            row[f"{v}_{args.other_label}"] = ari_on_labelled(b["truth"], lab_b[v])
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = ["# Same run, two code versions (embedding and ARI)", "", PROTOCOL, "",
             f"`{args.cache_label}` = `{args.cache}`, `{args.other_label}` = `{args.other}`; ARI of mclust "
             "(seed 2023 + seed), k-means and k-means on unit rows of each embedding.", "",
             "| run | bitwise equal | max abs diff | " + " | ".join(
                 f"{v} {lab}" for v in ("mclust", "kmeans", "kmeans_unit") for lab in (args.cache_label, args.other_label))
             + " |", "|---|---|---|" + "---|" * 6]
    for r in rows:
        lines.append(f"| {r['run']} | {'yes' if r['bitwise_equal'] else 'no'} | {r['max_abs_diff']:.3g} | "
                     + " | ".join(f"{r[f'{v}_{lab}']:.3f}" for v in ("mclust", "kmeans", "kmeans_unit")
                                  for lab in (args.cache_label, args.other_label)) + " |")
    write_results(f"defaults_{args.name}", {"rows": rows}, "\n".join(lines) + "\n")


def cmd_fit(args) -> None:
    overrides = parse_sets(args.set)
    for method in args.methods.split(","):
        for sample in args.slices.split(","):
            for seed in [int(s) for s in args.seeds.split(",")]:
                fit_one(method, sample, seed, overrides.get(method, {}), args.data, args.cache)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="fit and cache embeddings")
    f.add_argument("--methods", default="staig,spotscape")
    f.add_argument("--slices", default=",".join(DEFAULT_SLICES))
    f.add_argument("--seeds", default="0,1,2")
    f.add_argument("--set", action="append", default=[], metavar="METHOD.PARAM=VALUE")
    c = sub.add_parser("cluster", help="clustering variants on the cached embeddings")
    k = sub.add_parser("consensus", help="seed consensus vs single seeds")
    k.add_argument("--variants", default="mclust,kmeans,kmeans_unit")
    t = sub.add_parser("temperature", help="STAIG tau grid, label-free criteria")
    t.add_argument("--grid", default="10,20,35")
    t.add_argument("--clustering", default="mclust")
    b = sub.add_parser("table", help="defaults vs BANKSY per slice")
    b.add_argument("--seeds", type=int, default=3, help="seeds 0..n-1")
    for s in (c, k, b):
        s.add_argument("--methods", default="staig,spotscape,banksy")
        s.add_argument("--slices", default=",".join(DEFAULT_SLICES))
        s.add_argument("--max-seed", type=int, default=5, help="use seeds 0..max-seed-1 found in the cache")
    t.add_argument("--slices", default=",".join(DEFAULT_SLICES))
    t.add_argument("--max-seed", type=int, default=2)
    m = sub.add_parser("compare", help="embeddings of two code versions (bitwise equality, ARI)")
    m.add_argument("--other", type=Path, required=True, help="cache of the other code version")
    m.add_argument("--cache-label", default="before")
    m.add_argument("--other-label", default="after")
    m.add_argument("--name", default="refactor", help="results: defaults_<name>.{json,md}")
    for s in (f, c, k, t, b, m):
        s.add_argument("--data", type=Path, default=DEFAULT_DATA)
        s.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = p.parse_args(argv)
    from spatialdomains import _logging

    _logging.configure("WARNING")
    warnings.filterwarnings("ignore")
    {"fit": cmd_fit, "cluster": cmd_cluster, "consensus": cmd_consensus, "temperature": cmd_temperature,
     "table": cmd_table, "compare": cmd_compare}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
