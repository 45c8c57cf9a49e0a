"""Figures of the report and of ``spatialdomains analyse``, as PNG bytes (matplotlib, Agg backend).

Categorical colours are scanpy's defaults (``default_20`` up to 20 categories, ``default_102`` above),
so the maps look like ``sc.pl.spatial``/``sc.pl.umap`` of the same labels. Every function returns PNG
bytes (palette-quantised, modest DPI) so reports stay small; scatter plots draw at most ``max_points``
points per panel (a seeded uniform subsample above that).
"""

from __future__ import annotations

import io
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

DPI = 80  #: figure resolution of report images
MAX_POINTS = 30_000  #: points drawn per scatter panel
UNLABELLED = "#d9d9d9"

_STYLE = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update(_STYLE)
    return plt


def palette(n: int) -> list[str]:
    """scanpy's default categorical palette for ``n`` categories (cycled beyond 102)."""
    from scanpy.plotting import palettes

    base = list(palettes.default_20 if n <= 20 else palettes.default_102)
    return [base[i % len(base)] for i in range(max(n, 1))]


def to_png(fig, *, dpi: int = DPI, quantize: bool = True) -> bytes:
    """Render ``fig`` to PNG bytes and close it; ``quantize`` maps to a 256-colour palette (3-4x smaller)."""
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    data = buf.getvalue()
    if not quantize:
        return data
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    out = io.BytesIO()
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        out, format="PNG", optimize=True)
    return out.getvalue()


def _marker_size(n: int, ax_w_in: float, ax_h_in: float, fill: float = 0.55) -> float:
    """Scatter marker area (pt^2) so ``n`` points roughly tile ``fill`` of the axes."""
    area = ax_w_in * ax_h_in * 72.0 * 72.0 * fill
    return float(np.clip(area / max(n, 1), 0.3, 60.0))


def _legend_handles(entries: Sequence[tuple[str, str]]):
    from matplotlib.lines import Line2D

    return [Line2D([0], [0], marker="o", linestyle="", markersize=5, markerfacecolor=c, markeredgewidth=0,
                   label=str(name)) for name, c in entries]


def _colour_array(codes: np.ndarray, colours: Sequence[str]) -> np.ndarray:
    from matplotlib.colors import to_rgba_array

    lut = to_rgba_array(list(colours) + [UNLABELLED])
    idx = np.where((codes >= 0) & (codes < len(colours)), codes, len(colours))
    return lut[idx]


# --------------------------------------------------------------------------------------------------
# maps and embeddings
# --------------------------------------------------------------------------------------------------


def domain_maps(
    spatial: np.ndarray,
    slices: np.ndarray,
    rows: Sequence[Mapping[str, Any]],
    *,
    colours: Sequence[str],
    panel_in: float = 2.3,
    max_points: int | None = MAX_POINTS,
    dpi: int = DPI,
) -> bytes:
    """A grid of spatial scatter maps: one row per labelling, one column per slice.

    Each row is ``{"title": str, "codes": (N,) int colour index (-1 grey), "legend": [(name, code)]}``.
    The y axis is inverted (image convention: row 0 at the top) and the aspect is equal. Each slice
    draws a seeded uniform subsample of at most ``max_points`` spots
    (:func:`spatialdomains.metrics.subsample_index`), rasterised: the figure costs the same at 1M spots.
    """
    from ..metrics import subsample_index

    plt = _plt()
    slice_ids = list(dict.fromkeys(slices.tolist()))
    n_r, n_c = len(rows), len(slice_ids)
    fig, axes = plt.subplots(n_r, n_c, figsize=(panel_in * n_c + 1.3, panel_in * n_r), squeeze=False)
    for c, sid in enumerate(slice_ids):
        m = np.flatnonzero(slices == sid)
        keep = m[subsample_index(len(m), max_points, c)]
        xy = spatial[keep]
        s = _marker_size(len(keep), panel_in, panel_in)
        for r, row in enumerate(rows):
            ax = axes[r, c]
            ax.scatter(xy[:, 0], xy[:, 1], c=_colour_array(np.asarray(row["codes"])[keep], colours), s=s,
                       linewidths=0, rasterized=True)
            ax.set_aspect("equal", adjustable="datalim")
            ax.invert_yaxis()
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ("left", "bottom"):
                ax.spines[side].set_visible(False)
            if r == 0:
                ax.set_title(str(sid))
            if c == 0:
                ax.set_ylabel(row["title"])
        for r, row in enumerate(rows):
            if c == n_c - 1:
                entries = [(name, colours[code] if 0 <= code < len(colours) else UNLABELLED)
                           for name, code in row["legend"]]
                axes[r, c].legend(handles=_legend_handles(entries), loc="center left", bbox_to_anchor=(1.0, 0.5),
                                  frameon=False, ncol=1 if len(entries) <= 12 else 2, handletextpad=0.2,
                                  borderaxespad=0.3)
    fig.tight_layout()
    return to_png(fig, dpi=dpi)


def embedding_panels(
    xy: np.ndarray,
    panels: Sequence[Mapping[str, Any]],
    *,
    colours: Sequence[Sequence[str]],
    panel_in: float = 2.8,
    dpi: int = DPI,
    xlabel: str = "UMAP1",
    ylabel: str = "UMAP2",
) -> bytes:
    """One row of 2-D embedding scatters, each coloured by its own labelling (``codes`` and ``legend``)."""
    plt = _plt()
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(panel_in * n + 1.2 * n, panel_in), squeeze=False)
    s = _marker_size(len(xy), panel_in, panel_in, fill=0.35)
    order = np.random.default_rng(0).permutation(len(xy))  # no label drawn on top of all others
    for i, (panel, cols) in enumerate(zip(panels, colours)):
        ax = axes[0, i]
        codes = np.asarray(panel["codes"])
        ax.scatter(xy[order, 0], xy[order, 1], c=_colour_array(codes[order], cols), s=s, linewidths=0,
                   rasterized=True)
        ax.set_title(panel["title"])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        entries = [(name, cols[code] if 0 <= code < len(cols) else UNLABELLED) for name, code in panel["legend"]]
        ax.legend(handles=_legend_handles(entries), loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
                  ncol=1 if len(entries) <= 12 else 2, handletextpad=0.2, borderaxespad=0.3)
    fig.tight_layout()
    return to_png(fig, dpi=dpi)


def umap_2d(X: np.ndarray, *, n_neighbors: int = 15, n_epochs: int = 200, random_state: int = 0) -> np.ndarray:
    """2-D UMAP of ``X`` (rows = spots) with :class:`umap.UMAP` (spectral init, ``min_dist=0.1``).

    The neighbours are an exact sklearn kNN passed as ``precomputed_knn``, so umap-learn skips its
    approximate NN-descent (and its numba compilation). Callers pass a subsample (the report: at most
    ``umap_max_n`` spots).
    """
    import warnings

    from sklearn.neighbors import NearestNeighbors
    from umap import UMAP

    X = np.asarray(X, dtype=np.float32)
    n = X.shape[0]
    if n < 4:
        return np.zeros((n, 2))
    k = int(min(n_neighbors, n - 1))
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)  # the spot itself first, as umap expects
    with warnings.catch_warnings():  # "n_jobs overridden by random_state", small-data spectral notes
        warnings.simplefilter("ignore")
        reducer = UMAP(n_neighbors=k + 1, n_components=2, min_dist=0.1, n_epochs=n_epochs, init="spectral",
                       random_state=random_state, precomputed_knn=(idx, dist.astype(np.float32), None))
        return np.asarray(reducer.fit_transform(X))


# --------------------------------------------------------------------------------------------------
# training, stability, comparison
# --------------------------------------------------------------------------------------------------


def loss_curves(histories: Mapping[str, Mapping[str, np.ndarray]], *, dpi: int = DPI) -> bytes | None:
    """One panel per loss term (``loss`` first), one line per run; ``None`` without histories."""
    plt = _plt()
    terms: list[str] = []
    for h in histories.values():
        for t in h:
            if t not in ("epoch", "seconds") and t not in terms and len(h[t]):
                terms.append(t)
    if not terms:
        return None
    terms = sorted(terms, key=lambda t: (t != "loss", t))
    n = len(terms)
    ncol = min(n, 4)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.9 * ncol, 2.2 * nrow), squeeze=False)
    cols = palette(len(histories))
    for i, term in enumerate(terms):
        ax = axes[i // ncol, i % ncol]
        for (label, h), col in zip(histories.items(), cols):
            if term in h and len(h[term]):
                y = np.asarray(h[term], dtype=float)
                x = np.asarray(h["epoch"], dtype=float) if "epoch" in h and len(h["epoch"]) == len(y) \
                    else np.arange(len(y))
                ax.plot(x, y, color=col, lw=1.2, label=label)
        ax.set_title(term)
        ax.set_xlabel("epoch")
        if i == 0:
            ax.legend(frameon=False)
    for j in range(n, nrow * ncol):
        axes[j // ncol, j % ncol].axis("off")
    fig.tight_layout()
    return to_png(fig, dpi=dpi)


def heatmap(matrix: np.ndarray, labels: Sequence[str], *, title: str = "", vmin: float = 0.0, vmax: float = 1.0,
            cmap: str = "viridis", dpi: int = DPI) -> bytes:
    """Annotated square heatmap (pairwise ARI between runs)."""
    plt = _plt()
    n = len(labels)
    size = 1.2 + 0.42 * n
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    im = ax.imshow(matrix, vmin=vmin, vmax=vmax, cmap=cmap)
    ax.set_xticks(range(n))
    ax.set_xticklabels(labels, rotation=60, ha="right")
    ax.set_yticks(range(n))
    ax.set_yticklabels(labels)
    if n <= 16:
        for i in range(n):
            for j in range(n):
                v = matrix[i, j]
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if v < (vmin + vmax) / 2 else "black")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return to_png(fig, dpi=dpi)


def metric_bars(table: pd.DataFrame, metrics: Sequence[tuple[str, str]], *, dpi: int = DPI) -> bytes | None:
    """Bars of the mean over seeds (error bar: sd) per method, one panel per metric; dots = seeds.

    ``table`` has ``method``, ``seed`` and one column per metric key; ``metrics`` is ``[(key, title)]``.
    """
    plt = _plt()
    metrics = [(k, t) for k, t in metrics if k in table and table[k].notna().any()]
    if not metrics or table.empty:
        return None
    methods = list(dict.fromkeys(table["method"]))
    cols = palette(len(methods))
    n = len(metrics)
    ncol = min(n, 5)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(max(1.9, 0.55 * len(methods) + 1.0) * ncol, 2.3 * nrow),
                             squeeze=False)
    for i, (key, title) in enumerate(metrics):
        ax = axes[i // ncol, i % ncol]
        for j, m in enumerate(methods):
            v = table.loc[table["method"] == m, key].astype(float).dropna().to_numpy()
            if not len(v):
                continue
            sd = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
            ax.bar(j, float(np.mean(v)), yerr=sd, color=cols[j], alpha=0.85, capsize=3, width=0.7)
            jitter = (np.random.default_rng(j).random(len(v)) - 0.5) * 0.3
            ax.scatter(j + jitter, v, s=9, color="black", zorder=3, linewidths=0)
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels(methods, rotation=30, ha="right")
        ax.set_title(title)
    for j in range(n, nrow * ncol):
        axes[j // ncol, j % ncol].axis("off")
    fig.tight_layout()
    return to_png(fig, dpi=dpi)


# --------------------------------------------------------------------------------------------------
# QC
# --------------------------------------------------------------------------------------------------


def qc_histograms(qc: pd.DataFrame, slices: np.ndarray, *, dpi: int = DPI) -> bytes | None:
    """Histograms of total counts, genes detected and mitochondrial % (one step line per slice)."""
    plt = _plt()
    spec = [("total_counts", "total counts per spot"), ("n_genes_by_counts", "genes per spot"),
            ("pct_counts_mt", "mitochondrial %")]
    spec = [(k, t) for k, t in spec if k in qc and qc[k].notna().any()]
    if not spec:
        return None
    slice_ids = list(dict.fromkeys(slices.tolist()))
    cols = palette(len(slice_ids))
    fig, axes = plt.subplots(1, len(spec), figsize=(3.0 * len(spec), 2.3), squeeze=False)
    for i, (key, title) in enumerate(spec):
        ax = axes[0, i]
        v = qc[key].to_numpy(dtype=float)
        fin = v[np.isfinite(v)]
        bins = np.histogram_bin_edges(fin, bins=40) if len(fin) else 10
        for sid, col in zip(slice_ids, cols):
            x = v[(slices == sid) & np.isfinite(v)]
            ax.hist(x, bins=bins, histtype="step", color=col, lw=1.3, label=str(sid))
        ax.set_title(title)
        ax.set_ylabel("spots")
        if i == 0:
            ax.legend(frameon=False)
    fig.tight_layout()
    return to_png(fig, dpi=dpi)


# --------------------------------------------------------------------------------------------------
# DEG and enrichment
# --------------------------------------------------------------------------------------------------


def volcano(deg: pd.DataFrame, *, logfc: float = 0.25, padj: float = 0.05, n_label: int = 3,
            colours: Sequence[str] | None = None, dpi: int = DPI) -> bytes | None:
    """Volcano plot per domain (log2 fold change vs -log10 adjusted p), significant genes coloured."""
    plt = _plt()
    if deg is None or deg.empty:
        return None
    from ..analysis import _natural_sort

    doms = _natural_sort(deg["domain"].astype(str).unique())
    colours = colours or palette(len(doms))
    ncol = min(len(doms), 4)
    nrow = int(np.ceil(len(doms) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.3 * nrow), squeeze=False)
    floor = np.nextafter(0, 1)
    for i, d in enumerate(doms):
        ax = axes[i // ncol, i % ncol]
        sub = deg[deg["domain"].astype(str) == d]
        x = sub["log2fc"].to_numpy(dtype=float)
        y = -np.log10(np.maximum(sub["pval_adj"].to_numpy(dtype=float), floor))
        sig = sub["significant"].astype(bool).to_numpy()
        ax.scatter(x[~sig], y[~sig], s=3, color="#bbbbbb", linewidths=0, rasterized=True)
        ax.scatter(x[sig], y[sig], s=5, color=colours[i % len(colours)], linewidths=0, rasterized=True)
        ax.axhline(-np.log10(padj), color="#888888", lw=0.6, ls="--")
        for v in (-logfc, logfc):
            ax.axvline(v, color="#888888", lw=0.6, ls="--")
        top = sub[sig & (x > 0)].head(n_label)
        for k, (_, r) in enumerate(top.iterrows()):  # staggered: the top genes often share a p-value
            ax.annotate(str(r["gene"]), (float(r["log2fc"]), -np.log10(max(float(r["pval_adj"]), floor))),
                        fontsize=6, xytext=(3, 2 - 8 * k), textcoords="offset points",
                        arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "#777777"} if k else None)
        ax.set_title(f"domain {d} ({int(sig.sum())} sig.)")
        ax.set_xlabel("log2 fold change")
        ax.set_ylabel("-log10 adj. p")
    for j in range(len(doms), nrow * ncol):
        axes[j // ncol, j % ncol].axis("off")
    fig.tight_layout()
    return to_png(fig, dpi=dpi)


def dotplot(genes: Sequence[str], domains: Sequence[str], frac: np.ndarray, mean: np.ndarray, *,
            title: str = "", dpi: int = DPI) -> bytes:
    """Marker dot plot: dot size = fraction of spots expressing, colour = mean expression scaled per gene."""
    plt = _plt()
    G, D = len(genes), len(domains)
    span = mean.max(0, keepdims=True) - mean.min(0, keepdims=True)
    scaled = (mean - mean.min(0, keepdims=True)) / np.where(span > 0, span, 1.0)
    fig, ax = plt.subplots(figsize=(max(3.0, 0.26 * G + 1.8), max(1.8, 0.28 * D + 1.3)))
    yy, xx = np.meshgrid(np.arange(D), np.arange(G), indexing="ij")
    sc_ = ax.scatter(xx.ravel(), yy.ravel(), s=(frac.ravel() * 80.0) + 0.5, c=scaled.ravel(), cmap="Reds", vmin=0,
                     vmax=1, edgecolors="#555555", linewidths=0.3)
    ax.set_xticks(range(G))
    ax.set_xticklabels(genes, rotation=90)
    ax.set_yticks(range(D))
    ax.set_yticklabels(domains)
    ax.set_xlim(-0.7, G - 0.3)
    ax.set_ylim(D - 0.5, -0.5)
    ax.set_ylabel("domain")
    ax.set_title(title)
    cb = fig.colorbar(sc_, ax=ax, fraction=0.03, pad=0.02)
    cb.set_label("scaled mean", fontsize=7)
    for f in (0.25, 0.5, 1.0):
        ax.scatter([], [], s=f * 80.0 + 0.5, color="#999999", label=f"{int(f * 100)}%")
    ax.legend(title="expressing", frameon=False, loc="upper left", bbox_to_anchor=(1.12, 1.0), labelspacing=1.0)
    fig.tight_layout()
    return to_png(fig, dpi=dpi)


def go_bars(go: pd.DataFrame, *, top: int = 5, colours: Sequence[str] | None = None, dpi: int = DPI,
            max_label: int = 42) -> bytes | None:
    """Top enriched terms per domain as horizontal bars of -log10 adjusted p (one panel per domain)."""
    plt = _plt()
    if go is None or go.empty:
        return None
    from ..analysis import _natural_sort

    doms = _natural_sort(go["domain"].astype(str).unique())
    colours = colours or palette(len(doms))
    ncol = min(len(doms), 3)
    nrow = int(np.ceil(len(doms) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, (0.28 * top + 0.8) * nrow), squeeze=False)
    floor = np.nextafter(0, 1)
    for i, d in enumerate(doms):
        ax = axes[i // ncol, i % ncol]
        sub = go[go["domain"].astype(str) == d].sort_values(["pval_adj", "pval"]).head(top)
        names = []
        for _, r in sub.iterrows():
            desc = str(r.get("description", "") or "")
            name = str(r["term"]) if not desc or desc == "nan" else f"{r['term']} {desc}" \
                if str(r["term"]).startswith("GO:") else str(r["term"])
            names.append(name if len(name) <= max_label else name[: max_label - 1] + "…")
        vals = -np.log10(np.maximum(sub["pval_adj"].to_numpy(dtype=float), floor))
        pos = np.arange(top - 1, top - 1 - len(sub), -1)  # same bar height whatever the number of terms
        ax.barh(pos, vals, color=colours[i % len(colours)], height=0.7)
        ax.set_ylim(-0.6, top - 0.4)
        ax.set_yticks(pos)
        ax.set_yticklabels(names)
        ax.axvline(-np.log10(0.05), color="#888888", lw=0.6, ls="--")
        ax.set_title(f"domain {d}")
        ax.set_xlabel("-log10 adj. p")
    for j in range(len(doms), nrow * ncol):
        axes[j // ncol, j % ncol].axis("off")
    fig.tight_layout()
    return to_png(fig, dpi=dpi)
