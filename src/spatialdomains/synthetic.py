"""Synthetic tissue with known domains: the demo data and most tests come from here.

A slice is built in four seeded steps, each from its own random stream, so that slices of one
experiment share what real adjacent sections share and differ where they differ:

1. **Programme** (``seed``): genes, baseline expression, the marker programme of every domain
   (some markers shared, at lower strength, with the adjacent layer as in cortex), nuisance
   programmes (cell-composition noise that varies spot to spot with no spatial structure),
   depth-graded genes, mitochondrial genes, NB overdispersion per gene and the H&E texture of every
   domain. Slices made with the same ``seed`` share all of it.
2. **Tissue** (``seed``, ``tissue_seed``): spot positions on a Visium hex lattice (or scattered
   cells), a rounded, slightly irregular tissue outline holding exactly ``n_spots`` spots, and the
   domain field: curved parallel layers of unequal width (``pattern="layers"``, like DLPFC L1-L6 +
   WM) or irregular blobs (``pattern="blobs"``). Membership is soft: it blends over
   ``boundary_width`` spot spacings (10-90 % width), so boundary spots are mixtures, as on Visium.
3. **Counts** (``seed``, ``tissue_seed``): negative-binomial counts around
   ``library size x sum_k membership_k x domain profile_k x nuisance``, generated per chunk of
   spots straight into CSR (no dense spots x genes float64 array), with optional zero inflation.
4. **Batch** (``seed``, ``batch_seed``): a per-slice gene-wise log-normal shift
   (sd = ``batch_effect``) and a library-size shift, so unintegrated slices separate by batch.

With ``image=True`` an H&E-like RGB image is rendered (pink eosin with fibre stripes, purple
nuclei) whose nuclear density, nuclear size and shape, fibre orientation and eosin tint depend on
the domain (``image_mode="informative"``) or not (``"uninformative"``).

The defaults are tuned so that the problem is not trivial, as on DLPFC: one domain (the deepest
layer, white-matter-like) is very distinct, the others differ subtly, boundary spots are mixtures and
spot-to-spot nuisance programmes blur everything. On the default slice (3000 spots, 5 layers, 1000
genes) a non-spatial baseline (normalise 1e4, log1p, 500 seurat_v3 HVGs, PCA 30, k-means) reaches an
ARI of 0.25-0.48 over seeds 0-5 (0.25 for seed 0), while the same PCA averaged over each spot's
hex ring, then k-means, reaches 0.87-0.95 (0.91); ``tests/unit/test_synthetic.py`` checks the gap.

Scale: counts are sampled per chunk of ~4M spot x gene entries, about 75 ns of CPU per entry
(100k spots x 1000 genes ~ 8 s on one core; ``n_jobs`` threads split the chunks); the result holds
``X`` and ``layers['counts']``, ~8 bytes per non-zero each (~48 % non-zero with the defaults).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import _logging as logg
from ._constants import COUNTS_LAYER, SLICE_KEY, SPATIAL, TRUTH_KEY, UNS_KEY
from ._utils import InputError, atomic_path, record, write_csv_atomic, write_h5ad_atomic, write_text_atomic

__all__ = [
    "make_slice",
    "make_slices",
    "simulate_to_dir",
    "write_visium_hd",
    "write_xenium",
    "SIM_FORMATS",
    "fullres_image",
    "gene_sets",
    "domain_names",
    "PATTERNS",
    "LAYOUTS",
    "IMAGE_MODES",
    "GROUND_TRUTH_KEY",
    "MEMBERSHIP_KEY",
    "SYNTHETIC_STEP",
]

PATTERNS = ("layers", "blobs")
LAYOUTS = ("visium", "scatter", "cells", "square")
IMAGE_MODES = ("informative", "uninformative")
IMAGE_FORMATS = ("tif", "png", "jpg")  #: full-resolution image files: deflate TIFF, PNG, JPEG (quality 92)

GROUND_TRUTH_KEY = "ground_truth"  #: ``obs[GROUND_TRUTH_KEY]``: same labels as ``obs['truth']``
EXPRESSED_KEY = "expressed_domain"  #: ``obs[EXPRESSED_KEY]`` (cells, square): the domain a cell's counts come from
MEMBERSHIP_KEY = "synthetic_membership"  #: ``obsm[MEMBERSHIP_KEY]``: (N, K) float32 soft domain membership
MARKERS_KEY = "markers"  #: ``uns[MARKERS_KEY]``: {domain: [planted marker genes]}
SYNTHETIC_STEP = "synthetic"  #: ``uns['spatialdomains'][SYNTHETIC_STEP]``: every parameter used

#: Visium: spot centres 100 um apart = 137 full-resolution pixels; 55 um spots.
VISIUM_PITCH_PX = 137.0
VISIUM_SPOT_DIAMETER_PX = 89.4
VISIUM_FIDUCIAL_DIAMETER_PX = 144.4
#: Scattered cells (Xenium/MERFISH-like): ~10 um apart at 0.2125 um per pixel.
SCATTER_PITCH_PX = 47.06
SCATTER_CELL_DIAMETER_PX = 35.0
XENIUM_PIXEL_UM = 0.2125  #: Xenium morphology image pixel size (microns); cells ~10 um apart
CELL_PITCH_UM = SCATTER_PITCH_PX * XENIUM_PIXEL_UM  #: mean cell spacing of ``layout="cells"`` (10 um)
#: Visium HD: 8 um square bins; full-resolution pixels of 0.2737 um.
HD_BIN_UM = 8
HD_MICRONS_PER_PIXEL = 0.2737
HD_PITCH_PX = HD_BIN_UM / HD_MICRONS_PER_PIXEL
HIRES_MAX_SIDE = 2000
LOWRES_MAX_SIDE = 600
DEFAULT_IMAGE_SIDE = 2000  #: longest side of the full-resolution image unless ``image_size``/``fullres_scale``
MARGIN_PITCHES = 3.0  #: glass around the tissue, in spot spacings

MT_GENES = (
    "MT-ND1", "MT-ND2", "MT-CO1", "MT-CO2", "MT-ATP8", "MT-ATP6", "MT-CO3",
    "MT-ND3", "MT-ND4L", "MT-ND4", "MT-ND5", "MT-ND6", "MT-CYB",
)

_SQRT3_2 = math.sqrt(3.0) / 2.0
_LOGISTIC_10_90 = 2.0 * math.log(9.0)  # 10-90 % width of a logistic of scale 1
_GAUSS_10_90 = 2.5631  # 10-90 % width of a Gaussian CDF of sd 1
_NB_INVERSION_MAX_MEAN = 12.0  # above this mean, numpy's NB sampler; below, inversion
_CHUNK_ENTRIES = 4_000_000  # spots x genes entries sampled at once (~16 MB per float32 array)


# --------------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------------


def domain_names(n_domains: int) -> list[str]:
    """Labels of the planted domains: ``D0``, ``D1``, ... (``D0`` is the outermost layer)."""
    return [f"D{k}" for k in range(n_domains)]


def _random_state(random_state: int, seed: int | None, where: str) -> int:
    """``random_state``, or the deprecated ``seed`` keyword (accepted with a DeprecationWarning until 0.3)."""
    if seed is None:
        return int(random_state)
    import warnings

    warnings.warn(f"{where}(seed=...) is deprecated; use random_state=", DeprecationWarning, stacklevel=3)
    return int(seed)


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng([int(k) % (2**63) for k in keys])


def _resolve_params(
    n_spots: int,
    n_domains: int,
    n_genes: int,
    *,
    pattern: str,
    layout: str,
    n_markers_per_domain: int,
    seed: int,
    tissue_seed: int | None,
    slice_id: str,
    batch_effect: float,
    batch_seed: int | None,
    image: bool,
    image_mode: str,
    image_size: int | None,
    fullres_scale: float | None,
    boundary_width: float,
    marker_lfc: Sequence[float],
    shared_marker_fraction: float,
    n_nuisance: int | None,
    nuisance_strength: float,
    library_size: float | None,
    library_sd: float,
    overdispersion: float,
    dropout: float,
    mt_fraction: float,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """Validate the arguments (``InputError`` naming the argument) and fill in every default."""
    if pattern not in PATTERNS:
        raise InputError(f"pattern must be one of {', '.join(PATTERNS)}, got {pattern!r}")
    if layout not in LAYOUTS:
        raise InputError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if image_mode not in IMAGE_MODES:
        raise InputError(f"image_mode must be one of {', '.join(IMAGE_MODES)}, got {image_mode!r}")
    n_spots, n_domains, n_genes = int(n_spots), int(n_domains), int(n_genes)
    if n_domains < 1:
        raise InputError(f"n_domains must be >= 1, got {n_domains}")
    if n_spots < max(20, 10 * n_domains):
        raise InputError(f"n_spots={n_spots} is too small for {n_domains} domains (need >= {max(20, 10 * n_domains)})")
    n_mt = min(len(MT_GENES), max(2, n_genes // 75))
    n_gradient = max(2, n_genes // 50)
    free = n_genes - n_mt - n_gradient
    markers = int(n_markers_per_domain)
    if markers < 1:
        raise InputError(f"n_markers_per_domain must be >= 1, got {n_markers_per_domain}")
    if n_domains * markers > 0.5 * free:
        new = int(0.5 * free // n_domains)
        if new < 1:
            raise InputError(
                f"n_genes={n_genes} is too small for {n_domains} domains (need >= {2 * n_domains + n_mt + n_gradient})"
            )
        logg.warning(f"n_markers_per_domain={markers} does not fit {n_genes} genes and {n_domains} domains; using {new}")
        markers = new
    nuisance_size = markers
    if n_nuisance is None:  # one per domain, at most ~15 % of the genes
        n_nuisance = max(1, min(max(2, n_domains), int(0.15 * n_genes) // nuisance_size))
    while n_nuisance > 0 and n_domains * markers + n_nuisance * nuisance_size > 0.75 * free:
        n_nuisance -= 1
    lo, hi = (float(v) for v in marker_lfc)
    if not 0 <= lo <= hi:
        raise InputError(f"marker_lfc must be (low, high) with 0 <= low <= high, got {tuple(marker_lfc)}")
    for name, value in (("batch_effect", batch_effect), ("boundary_width", boundary_width), ("library_sd", library_sd),
                        ("overdispersion", overdispersion), ("nuisance_strength", nuisance_strength)):
        if not np.isfinite(value) or value < 0:
            raise InputError(f"{name} must be a finite number >= 0, got {value}")
    if not 0 <= dropout < 1:
        raise InputError(f"dropout must be in [0, 1), got {dropout}")
    if not 0 <= mt_fraction < 0.9:
        raise InputError(f"mt_fraction must be in [0, 0.9), got {mt_fraction}")
    if not 0 <= shared_marker_fraction <= 1:
        raise InputError(f"shared_marker_fraction must be in [0, 1], got {shared_marker_fraction}")
    if fullres_scale is not None and not fullres_scale > 0:
        raise InputError(f"fullres_scale must be > 0, got {fullres_scale}")
    if image_size is not None and int(image_size) < 64:
        raise InputError(f"image_size must be >= 64 pixels, got {image_size}")
    if library_size is None:
        library_size = {"visium": 2000.0, "scatter": 300.0}.get(layout, 200.0)
    if not library_size > 0:
        raise InputError(f"library_size must be > 0, got {library_size}")
    tissue_seed = 0 if tissue_seed is None else int(tissue_seed)
    return dict(
        n_spots=n_spots, n_domains=n_domains, n_genes=n_genes, pattern=pattern, layout=layout,
        n_markers_per_domain=markers, seed=int(seed), tissue_seed=tissue_seed, slice_id=str(slice_id),
        batch_effect=float(batch_effect), batch_seed=tissue_seed + 1 if batch_seed is None else int(batch_seed),
        image=bool(image), image_mode=image_mode, image_size=None if image_size is None else int(image_size),
        fullres_scale=None if fullres_scale is None else float(fullres_scale), boundary_width=float(boundary_width),
        marker_lfc=[lo, hi], shared_marker_fraction=float(shared_marker_fraction), n_nuisance=int(n_nuisance),
        nuisance_size=int(nuisance_size), nuisance_strength=float(nuisance_strength), n_mt=int(n_mt),
        n_gradient=int(n_gradient), library_size=float(library_size), library_sd=float(library_sd),
        overdispersion=float(overdispersion), dropout=float(dropout), mt_fraction=float(mt_fraction),
        n_jobs=max(1, int(n_jobs)),
    )


# --------------------------------------------------------------------------------------------------
# programme: genes, domain profiles, image texture (shared by every slice of one seed)
# --------------------------------------------------------------------------------------------------


@dataclass
class _Programme:
    var: pd.DataFrame
    base: np.ndarray  # (G,) expression proportions, sum 1
    profile: np.ndarray  # (K, G) float32 multiplier per domain (mean 1 under ``base``)
    size: np.ndarray  # (G,) float32 NB size r (var = mu + mu^2 / r)
    domain_library: np.ndarray  # (K,) library-size factor per domain
    markers: dict[str, list[str]]
    nuisance_cols: np.ndarray  # (M,) gene columns of the nuisance programmes
    nuisance_load: np.ndarray  # (L, M) float32 loadings
    mt_cols: np.ndarray
    gradient_cols: np.ndarray
    gradient_slope: np.ndarray  # (n_gradient,) log-fold per depth sd
    texture: dict[str, np.ndarray] = field(default_factory=dict)  # per-domain image parameters


def _gene_names(n: int) -> list[str]:
    width = max(4, len(str(n)))
    return [f"GENE{i:0{width}d}" for i in range(1, n + 1)]


def _build_programme(p: dict[str, Any]) -> _Programme:
    rng = _rng(p["seed"], 1)
    K, G, m = p["n_domains"], p["n_genes"], p["n_markers_per_domain"]
    n_mt, n_grad, L, ns = p["n_mt"], p["n_gradient"], p["n_nuisance"], p["nuisance_size"]
    names = domain_names(K)
    n_other = G - n_mt
    # roles in a random order over the non-MT genes; MT genes last (chrM last, as Cell Ranger orders)
    roles = np.array(["background"] * n_other, dtype=object)
    perm = rng.permutation(n_other)
    pos = 0
    marker_cols = perm[pos:pos + K * m].reshape(K, m)
    pos += K * m
    nuisance_cols = perm[pos:pos + L * ns]
    pos += L * ns
    gradient_cols = perm[pos:pos + n_grad]
    programme = np.array([""] * G, dtype=object)
    marker_of = np.array([""] * G, dtype=object)
    for k in range(K):
        programme[marker_cols[k]] = f"PROGRAMME_{names[k]}"
        marker_of[marker_cols[k]] = names[k]
        roles[marker_cols[k]] = "marker"
    for j in range(L):
        programme[nuisance_cols[j * ns:(j + 1) * ns]] = f"NUISANCE_{j + 1}"
    roles[nuisance_cols] = "nuisance"
    roles[gradient_cols] = "gradient"
    programme[gradient_cols] = "GRADIENT"
    mt_cols = np.arange(n_other, G)
    roles = np.concatenate([roles, np.array(["mt"] * n_mt, dtype=object)])
    programme[mt_cols] = "MT"
    var_names = _gene_names(n_other) + list(MT_GENES[:n_mt])

    # baseline proportions: log-normal; markers a bit above the median gene
    log_base = rng.normal(0.0, 1.3, G)
    log_base[marker_cols.ravel()] = rng.normal(0.3, 1.1, K * m)
    log_base[nuisance_cols] = rng.normal(0.3, 1.1, nuisance_cols.size)
    base = np.exp(log_base[:n_other])
    base *= (1.0 - p["mt_fraction"]) / base.sum()
    mt = np.exp(rng.normal(0.0, 0.7, n_mt))
    base = np.concatenate([base, mt * p["mt_fraction"] / mt.sum()]) if n_mt else base

    # domain profiles: planted markers up in their domain, some shared (weaker) with a neighbour
    lo, hi = p["marker_lfc"]
    lfc = np.zeros((K, G))
    partner = rng.permutation(K)  # blobs: each domain shares some markers with one other domain
    # domains differ in how distinct they are (as white matter stands out in cortex, layers less so)
    distinct = np.append(np.linspace(0.5, 1.0, K - 1), 2.2)
    distinct = np.concatenate([rng.permutation(distinct[:-1]), distinct[-1:]]) if p["pattern"] == "layers" \
        else rng.permutation(distinct)
    for k in range(K):
        strength = rng.uniform(lo, hi, m) * distinct[k]
        lfc[k, marker_cols[k]] = strength
        shared = rng.random(m) < p["shared_marker_fraction"]
        if p["pattern"] == "layers":  # cortex: graded into the layers above and below
            neighbours = [j for j in (k - 1, k + 1) if 0 <= j < K]
        else:
            j = int(partner[k]) if partner[k] != k else int(partner[(k + 1) % K])
            neighbours = [j] if j != k else []
        for j in neighbours:
            lfc[j, marker_cols[k][shared]] = np.maximum(lfc[j, marker_cols[k][shared]],
                                                        strength[shared] * rng.uniform(0.3, 0.6, shared.sum()))
    profile = np.exp(lfc)
    profile /= (profile * base).sum(1, keepdims=True)  # a domain's profile redistributes, keeps the total
    # NB size: overdispersion phi = 1/r, log-normal around p["overdispersion"]
    phi = p["overdispersion"] * np.exp(rng.normal(0.0, 0.05, G))
    size = 1.0 / np.maximum(phi, 1e-3)
    domain_library = np.exp(rng.normal(0.0, 0.15, K))
    nuisance_load = rng.uniform(0.6, 1.2, (L, ns)) * p["nuisance_strength"]
    gradient_slope = rng.choice([-1.0, 1.0], n_grad) * rng.uniform(0.2, 0.5, n_grad)

    # image texture per domain: evenly spread values, shuffled, so adjacent domains differ
    def spread(a, b):
        vals = np.linspace(a, b, K) if K > 1 else np.array([(a + b) / 2])
        return rng.permutation(vals)

    texture = dict(
        density=spread(5.0, 18.0),  # nuclei per (spot spacing)^2
        radius=spread(0.035, 0.065),  # nucleus semi-major axis / spot spacing
        elongation=spread(1.0, 2.2),  # semi-major / semi-minor
        angle=(rng.permutation(K) / max(K, 1) * 180.0 + rng.uniform(0, 180.0 / max(K, 1))) % 180.0,
        stripe_period=spread(0.12, 0.3),  # fibre period / spot spacing
        stripe_amp=spread(0.0, 0.22),
        tint=spread(-0.05, 0.05),  # eosin lightness shift
    )
    var = pd.DataFrame(
        {
            "gene_ids": [f"SYNG{i:07d}" for i in range(G)],
            "feature_types": "Gene Expression",
            "programme": pd.Categorical(np.where(programme == "", "BACKGROUND", programme).astype(str)),
            "marker_of": marker_of.astype(str),
            "role": pd.Categorical(roles.astype(str)),
            "mt": np.asarray([n.startswith("MT-") for n in var_names]),
        },
        index=pd.Index(var_names, name=None),
    )
    markers = {names[k]: [var_names[c] for c in sorted(marker_cols[k])] for k in range(K)}
    return _Programme(
        var=var, base=base, profile=profile.astype(np.float32), size=size.astype(np.float32),
        domain_library=domain_library, markers=markers, nuisance_cols=nuisance_cols.astype(np.int64),
        nuisance_load=nuisance_load.astype(np.float32), mt_cols=mt_cols, gradient_cols=gradient_cols.astype(np.int64),
        gradient_slope=gradient_slope, texture=texture,
    )


# --------------------------------------------------------------------------------------------------
# tissue: spot positions, outline, domain field (all in units of the spot spacing)
# --------------------------------------------------------------------------------------------------


@dataclass
class _Tissue:
    xy: np.ndarray  # (N, 2) float64 positions in spot spacings, min at (0, 0)
    array_row: np.ndarray | None
    array_col: np.ndarray | None
    extent: np.ndarray  # (2,) max x, max y of the spots
    pattern: str
    n_domains: int
    width: float  # boundary width (10-90 %) in spot spacings
    geom: dict[str, Any]

    def depth(self, pts: np.ndarray) -> np.ndarray:
        """Layer depth (spot spacings) for ``pattern='layers'``; a projection for blobs."""
        g = self.geom
        rel = pts - g["centre"]
        v = rel @ g["normal"]
        s = rel @ g["tangent"]
        if self.pattern == "blobs":
            return v
        sn = s / g["half_span"]
        wobble = sum(a * np.sin(f * sn + ph) for a, f, ph in g["wobble"])
        return v + g["curvature"] * g["half_span"] * sn**2 + wobble

    def membership(self, pts: np.ndarray) -> np.ndarray:
        """Soft membership (n, K) float32 of points (spot spacings); rows sum to 1."""
        K = self.n_domains
        if K == 1:
            return np.ones((pts.shape[0], 1), dtype=np.float32)
        if self.pattern == "layers":
            d = self.depth(pts)
            scale = max(self.width, 1e-6) / _LOGISTIC_10_90
            cdf = np.empty((pts.shape[0], K + 1), dtype=np.float64)
            cdf[:, 0] = 1.0
            cdf[:, K] = 0.0
            z = (d[:, None] - self.geom["bounds"][None, :]) / scale
            cdf[:, 1:K] = 0.5 * (1.0 + np.tanh(0.5 * z))  # logistic, overflow-safe
            m = cdf[:, :K] - cdf[:, 1:]
            return np.clip(m, 0.0, 1.0).astype(np.float32)
        from scipy.ndimage import map_coordinates

        g = self.geom
        gx = (pts[:, 0] - g["origin"][0]) / g["step"]
        gy = (pts[:, 1] - g["origin"][1]) / g["step"]
        m = np.stack([map_coordinates(g["soft"][k], [gy, gx], order=1, mode="nearest") for k in range(K)], 1)
        m = np.clip(m, 0.0, None)
        m /= np.maximum(m.sum(1, keepdims=True), 1e-12)
        return m.astype(np.float32)

    def outline(self, pts: np.ndarray) -> np.ndarray:
        """Outline coordinate of points: 1 on the outermost spots, < 1 inside."""
        return _outline_rank(pts + self.geom["offset"], self.geom) / self.geom["rank_cut"]

    def depth_z(self, pts: np.ndarray) -> np.ndarray:
        d = self.depth(pts)
        return (d - self.geom["depth_mean"]) / self.geom["depth_sd"]


def _lattice_candidates(n: int, layout: str, rng: np.random.Generator, half: float):
    """Candidate positions (spot spacings) covering a square of half-side ``half`` around 0.

    ``visium``/``scatter``: the hex lattice (jittered for scatter); ``square``: the square grid of
    Visium HD bins; ``cells``: irregular cell centroids (see :func:`_cell_candidates`). Returns
    ``(xy, rows, cols)``; rows/cols are the lattice indices (zeros for ``cells``).
    """
    if layout == "cells":
        xy = _cell_candidates(rng, half)
        zeros = np.zeros(xy.shape[0], dtype=np.int64)
        return xy, zeros, zeros
    if layout == "square":
        side = np.arange(-int(math.ceil(half)) - 1, int(math.ceil(half)) + 2)
        rr, cc = np.meshgrid(side, side, indexing="ij")
        rr, cc = rr.ravel(), cc.ravel()
        return np.stack([cc, rr], 1).astype(np.float64), rr, cc
    n_rows = int(math.ceil(half / _SQRT3_2)) + 1
    n_cols = int(math.ceil(2 * half)) + 2
    rows = np.arange(-n_rows, n_rows + 1)
    cols = np.arange(-n_cols, n_cols + 1)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    keep = ((rr + cc) % 2) == 0
    rr, cc = rr[keep], cc[keep]
    xy = np.stack([cc * 0.5, rr * _SQRT3_2], 1).astype(np.float64)
    if layout == "scatter":  # jittered lattice: cells, not spots
        ang = rng.uniform(0, 2 * np.pi, rr.size)
        rad = 0.32 * np.sqrt(rng.random(rr.size))
        xy += np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)
    return xy, rr, cc


_CELL_MIN_DIST = 0.6  #: closest two cell centroids may be, in mean cell spacings
_CELL_RELAX_STEPS = 4


def _cell_candidates(rng: np.random.Generator, half: float) -> np.ndarray:
    """Irregular cell centroids: uniform random points (as many per area as the hex lattice) pushed
    apart where two lie closer than ``_CELL_MIN_DIST``, like segmented cells (no lattice left)."""
    from scipy.spatial import cKDTree

    side = 2.0 * half
    n = int(rng.poisson(side * side / _SQRT3_2))
    xy = rng.uniform(-half, half, (n, 2))
    for _ in range(_CELL_RELAX_STEPS):
        dist, nbr = cKDTree(xy).query(xy, k=2)
        dist, nbr = dist[:, 1], nbr[:, 1]
        close = np.flatnonzero(dist < _CELL_MIN_DIST)
        if not close.size:
            break
        away = xy[close] - xy[nbr[close]]
        d = np.maximum(dist[close], 1e-9)[:, None]
        away = np.where(d > 1e-6, away / d, rng.normal(0, 1, away.shape))  # coincident: any direction
        xy[close] += away * (0.5 * (_CELL_MIN_DIST - d))  # each of the pair moves half the overlap
    return xy


def _outline_rank(xy: np.ndarray, g: dict[str, Any]) -> np.ndarray:
    """Radial 'distance' of points in a rotated, wobbly superellipse (1 = on the unit outline)."""
    c, s = math.cos(g["rotation"]), math.sin(g["rotation"])
    x = (xy[:, 0] * c + xy[:, 1] * s) / g["aspect"]
    y = -xy[:, 0] * s + xy[:, 1] * c
    p = g["exponent"]
    r = (np.abs(x) ** p + np.abs(y) ** p) ** (1.0 / p)
    theta = np.arctan2(y, x)
    wob = 1.0 + sum(a * np.cos(j * theta + ph) for j, a, ph in g["outline_wobble"])
    return r / wob


def _build_tissue(p: dict[str, Any], programme_rng_shares: np.ndarray) -> _Tissue:
    rng = _rng(p["seed"], p["tissue_seed"], 2)
    n, K = p["n_spots"], p["n_domains"]
    shape = dict(
        rotation=float(rng.uniform(0, np.pi)),
        aspect=float(np.exp(rng.uniform(-0.3, 0.3))),
        exponent=float(rng.uniform(2.0, 3.2)),
        outline_wobble=[(j, float(rng.uniform(0, 0.06) / math.sqrt(j - 1)), float(rng.uniform(0, 2 * np.pi)))
                        for j in range(2, 7)],
    )
    area = n * (1.0 if p["layout"] == "square" else _SQRT3_2)  # spot spacings^2 per lattice point
    radius = math.sqrt(area / math.pi) * max(shape["aspect"], 1 / shape["aspect"]) ** 0.5
    half = 1.35 * radius * max(shape["aspect"], 1.0) + 3.0
    xy, rr, cc = _lattice_candidates(n, p["layout"], rng, half)
    rank = _outline_rank(xy, shape)
    if rank.size < n:  # pragma: no cover - the candidate square always holds enough points
        raise InputError("internal: lattice too small")
    idx = np.argpartition(rank, n - 1)[:n]
    rank_cut = float(rank[idx].max())
    xy, rr, cc = xy[idx], rr[idx], cc[idx]
    array_row = array_col = None
    if p["layout"] == "visium":
        r0, c0 = rr.min(), cc.min()
        if (r0 + c0) % 2:
            c0 -= 1
        array_row, array_col = (rr - r0).astype(np.int64), (cc - c0).astype(np.int64)
        offset = np.array([c0 * 0.5, r0 * _SQRT3_2])
    elif p["layout"] == "square":
        r0, c0 = rr.min(), cc.min()
        array_row, array_col = (rr - r0).astype(np.int64), (cc - c0).astype(np.int64)
        offset = np.array([c0, r0], dtype=np.float64)
    else:
        offset = xy.min(0)
    xy = xy - offset  # final frame: candidate = final + offset
    extent = xy.max(0)
    centre = xy.mean(0)
    phi = float(rng.uniform(0, np.pi))
    normal = np.array([math.cos(phi), math.sin(phi)])
    tangent = np.array([-normal[1], normal[0]])
    rel = xy - centre
    half_span = float(np.abs(rel @ tangent).max()) + 1e-9
    geom: dict[str, Any] = dict(centre=centre, normal=normal, tangent=tangent, half_span=half_span,
                                offset=offset, rank_cut=rank_cut, **shape)
    if p["pattern"] == "layers":
        geom["curvature"] = float(rng.choice([-1, 1]) * rng.uniform(0.08, 0.25))
        geom["wobble"] = [(float(rng.uniform(0.3, 1.0)), float(f), float(rng.uniform(0, 2 * np.pi)))
                          for f in rng.uniform(1.0, 3.5, 2)]
    tissue = _Tissue(xy=xy, array_row=array_row, array_col=array_col, extent=extent, pattern=p["pattern"],
                     n_domains=K, width=p["boundary_width"], geom=geom)
    # per-slice jitter of the shared target shares (adjacent sections are similar, not equal)
    shares = programme_rng_shares * np.exp(rng.normal(0, 0.1, K))
    shares /= shares.sum()
    if p["pattern"] == "layers":
        d = tissue.depth(xy)
        geom["bounds"] = np.quantile(d, np.cumsum(shares)[:-1]) if K > 1 else np.zeros(0)
    else:
        _blob_field(tissue, shares, rng)
    d = tissue.depth(xy)
    geom["depth_mean"], geom["depth_sd"] = float(d.mean()), float(d.std() + 1e-9)
    return tissue


def _blob_field(tissue: _Tissue, shares: np.ndarray, rng: np.random.Generator) -> None:
    """Irregular blobs: argmax of K smooth random fields (biased to hit ``shares``), then blurred."""
    import cv2

    K, xy, g = tissue.n_domains, tissue.xy, tissue.geom
    span = float(max(tissue.extent.max(), 1.0))
    pad = 2.0 + 2.0 * tissue.width
    origin = -pad * np.ones(2)
    # coarse random Fourier fields, smooth at ~1/5 of the tissue
    ell = 0.2 * span
    n_feat = 48
    coarse_n = 96
    cx = np.linspace(origin[0], tissue.extent[0] + pad, coarse_n)
    cy = np.linspace(origin[1], tissue.extent[1] + pad, coarse_n)
    pts = np.stack(np.meshgrid(cx, cy), -1).reshape(-1, 2)
    fields = np.empty((K, coarse_n, coarse_n), dtype=np.float32)
    for k in range(K):
        w = rng.normal(0, 1.0 / ell, (n_feat, 2))
        b = rng.uniform(0, 2 * np.pi, n_feat)
        fields[k] = (np.cos(pts @ w.T + b) @ rng.normal(0, 1, n_feat) / math.sqrt(n_feat)).reshape(coarse_n, coarse_n)
    total = span + 2 * pad
    step = max(min(0.5, total / 256.0), total / 4096.0)  # fine grid: <= 0.5 spacing, <= 4096 cells a side
    nx = int(math.ceil((tissue.extent[0] + pad - origin[0]) / step)) + 1
    ny = int(math.ceil((tissue.extent[1] + pad - origin[1]) / step)) + 1
    fine = np.stack([cv2.resize(fields[k], (nx, ny), interpolation=cv2.INTER_CUBIC) for k in range(K)])
    # bias so the hard shares over the spots match the targets
    gx = np.clip(np.round((xy[:, 0] - origin[0]) / step).astype(np.int64), 0, nx - 1)
    gy = np.clip(np.round((xy[:, 1] - origin[1]) / step).astype(np.int64), 0, ny - 1)
    at_spots = fine[:, gy, gx].T  # (N, K)
    bias = np.zeros(K)
    for _ in range(200):
        lab = np.argmax(at_spots + bias, 1)
        got = np.bincount(lab, minlength=K) / len(lab)
        if np.abs(got - shares).max() < 0.01:
            break
        bias += 0.5 * (shares - got) / np.maximum(shares, 1e-3) * 0.3
    hard = np.argmax(fine + bias[:, None, None], 0)
    sigma = max(tissue.width, 1e-6) / _GAUSS_10_90 / step
    soft = np.empty((K, ny, nx), dtype=np.float32)
    for k in range(K):
        one = (hard == k).astype(np.float32)
        soft[k] = cv2.GaussianBlur(one, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT) if sigma > 0.3 else one
    g.update(origin=origin, step=step, soft=soft)


def _target_shares(p: dict[str, Any]) -> np.ndarray:
    """Unequal domain shares, each >= 0.5/K (DLPFC-like layer widths for the layered pattern)."""
    K = p["n_domains"]
    rng = _rng(p["seed"], 5)
    if K == 7 and p["pattern"] == "layers":  # L1..L6 + WM of DLPFC
        return np.array([0.08, 0.07, 0.17, 0.07, 0.15, 0.17, 0.29])
    return 0.5 / K + 0.5 * rng.dirichlet(2.0 * np.ones(K))


# --------------------------------------------------------------------------------------------------
# counts
# --------------------------------------------------------------------------------------------------


def _nb_counts(rng: np.random.Generator, mu: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Negative-binomial counts (mean ``mu`` (n, G), size ``size`` (G,)) in sparse form.

    Returns the sorted flat indices of the non-zero entries and their counts (float32). Sampled by
    inversion of one uniform per entry: the pmf recursion ``P(k) = P(k-1) (k-1+r)/k * mu/(r+mu)``
    runs on the shrinking set of entries not yet placed, so the cost is about (1 + mean) cheap array
    passes per entry, several times faster than numpy's gamma-Poisson sampler for the small means
    that make up almost every entry. Entries with a mean above ``_NB_INVERSION_MAX_MEAN`` use numpy.
    """
    n, G = mu.shape
    flat_mu = mu.reshape(-1)
    u = rng.random(n * G, dtype=np.float32)
    big = np.flatnonzero(flat_mu > _NB_INVERSION_MAX_MEAN)
    r_big = size[big % G].astype(np.float64)
    big_vals = rng.negative_binomial(r_big, r_big / (r_big + flat_mu[big])).astype(np.float32)
    u[big] = 0.0
    p0 = mu + size  # P(0) = (r / (r + mu))^r
    np.divide(size, p0, out=p0)
    np.log(p0, out=p0)
    p0 *= size
    np.exp(p0, out=p0)
    p0 = p0.reshape(-1)
    u -= p0  # probability mass still to pass: > 0 means the count is >= 1
    act = np.flatnonzero(u > 0)
    cnt = np.zeros(act.size, dtype=np.float32)
    if act.size:
        per_row = np.diff(np.searchsorted(act, np.arange(n + 1, dtype=np.int64) * G))
        r_a = size[act - np.repeat(np.arange(n, dtype=np.int64) * G, per_row)]
        m_a = flat_mu[act]
        state = np.empty((4, act.size), dtype=np.float32)  # q, q (r - 1), remaining mass, pmf
        np.divide(m_a, r_a + m_a, out=state[0])
        np.multiply(state[0], r_a - 1.0, out=state[1])
        state[2] = u[act]
        state[3] = p0[act]
        del r_a, m_a, u, p0
        pos = np.arange(act.size)
        k = 0
        while pos.size:
            k += 1
            q, qr, rem, prob = state
            prob *= q + qr * np.float32(1.0 / k)  # (k - 1 + r) / k * q
            rem -= prob
            done = rem <= 0
            if k > 30:  # float32 round-off in the far tail: stop where the pmf is negligible
                done |= prob < 1e-7
            cnt[pos[done]] = k
            keep = ~done
            if not keep.any():
                break
            pos = pos[keep]
            state = np.compress(keep, state, axis=1)
    nz = big_vals > 0
    if nz.any():
        big, big_vals = big[nz], big_vals[nz]
        at = np.searchsorted(act, big)
        act = np.insert(act, at, big)
        cnt = np.insert(cnt, at, big_vals)
    return act, cnt


def _count_chunks(p: dict[str, Any], prog: _Programme, tissue: _Tissue,
                  membership: np.ndarray) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
    """Counts (N, G) as CSR pieces, one chunk of spots at a time and in order (never a dense N x G array).

    Yields ``(start, stop, data float32, indices int32, per_row int64)`` for the spots
    ``start:stop``. ``membership`` holds the domain weights the expression is built from. With
    ``n_jobs`` threads at most ``2 * n_jobs`` chunks are in flight, so memory stays bounded whatever N.
    """
    rng = _rng(p["seed"], p["tissue_seed"], 3)
    N, G = membership.shape[0], p["n_genes"]
    # library size: log-normal per spot x domain factor x a mild fall-off at the tissue edge
    lib = p["library_size"] * np.exp(rng.normal(-0.5 * p["library_sd"] ** 2, p["library_sd"], N))
    lib *= membership @ prog.domain_library
    lib *= 1.0 - 0.25 * np.clip(tissue.outline(tissue.xy), 0.0, 1.0) ** 8
    nuis = rng.normal(0.0, 1.0, (N, prog.nuisance_load.shape[0])).astype(np.float32)
    mt_quality = rng.normal(0.0, 0.3, N)
    # batch: per-slice gene-wise log-normal shift and library-size shift
    gene_shift = np.ones(G)
    if p["batch_effect"] > 0:
        brng = _rng(p["seed"], p["batch_seed"], 4)
        gene_shift = np.exp(brng.normal(0.0, p["batch_effect"], G))
        lib *= math.exp(brng.normal(0.0, p["batch_effect"]))
    base_prof = (prog.profile * (prog.base * gene_shift)[None, :]).astype(np.float32)  # (K, G)
    grad_z = tissue.depth_z(tissue.xy)
    ns = prog.nuisance_load.shape[1] if prog.nuisance_load.size else 0
    L = prog.nuisance_load.shape[0]
    load = prog.nuisance_load.reshape(-1)[None, :]
    size = prog.size
    drop = p["dropout"]
    chunk = max(1, int(_CHUNK_ENTRIES // G))
    starts = list(range(0, N, chunk))

    def one_chunk(i: int):
        # each chunk has its own random stream: the result does not depend on n_jobs
        crng = _rng(p["seed"], p["tissue_seed"], 3, i)
        start, stop = starts[i], min(N, starts[i] + chunk)
        mu = membership[start:stop] @ base_prof  # (n, G) float32
        if L:
            eff = np.repeat(nuis[start:stop], ns, axis=1) * load
            eff -= 0.5 * load**2  # mean-preserving
            mu[:, prog.nuisance_cols] *= np.exp(eff)
        mu[:, prog.mt_cols] *= np.exp(mt_quality[start:stop, None]).astype(np.float32)
        mu[:, prog.gradient_cols] *= np.exp(grad_z[start:stop, None] * prog.gradient_slope[None, :]).astype(np.float32)
        mu *= lib[start:stop, None].astype(np.float32)
        nz, vals = _nb_counts(crng, mu, size)
        if drop > 0 and nz.size:  # zero inflation, stronger at low means
            keep = crng.random(nz.size, dtype=np.float32) >= drop / (1.0 + mu.reshape(-1)[nz])
            nz, vals = nz[keep], vals[keep]
        per_row = np.diff(np.searchsorted(nz, np.arange(stop - start + 1, dtype=np.int64) * G))
        cols = nz - np.repeat(np.arange(stop - start, dtype=np.int64) * G, per_row)
        return start, stop, vals, cols.astype(np.int32), per_row

    n_jobs = max(1, min(int(p.get("n_jobs", 1)), len(starts)))
    if n_jobs == 1:
        for i in range(len(starts)):
            yield one_chunk(i)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(n_jobs) as pool:  # numpy releases the GIL in the heavy loops
        pending: deque = deque()
        for i in range(len(starts)):
            pending.append(pool.submit(one_chunk, i))
            if len(pending) >= 2 * n_jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _sample_counts(p: dict[str, Any], prog: _Programme, tissue: _Tissue, membership: np.ndarray) -> sp.csr_matrix:
    """CSR float32 counts (N, G) of :func:`_count_chunks`, assembled in memory."""
    N, G = membership.shape[0], p["n_genes"]
    # fill one growing buffer per array (the first chunk's density predicts the rest): no list of
    # chunks to concatenate, no fragmented heap
    indptr = np.zeros(N + 1, dtype=np.int64)
    data = indices = np.empty(0, dtype=np.float32)
    nnz = 0
    for start, stop, vals, cols, per_row in _count_chunks(p, prog, tissue, membership):
        if nnz == 0 and data.size == 0:
            cap = int(vals.size / max(per_row.size, 1) * N * 1.03) + 1024
            data, indices = np.empty(cap, dtype=np.float32), np.empty(cap, dtype=np.int32)
        if nnz + vals.size > data.size:
            cap = int((nnz + vals.size) * 1.1) + 1024
            data, indices = np.resize(data, cap), np.resize(indices, cap)
        data[nnz:nnz + vals.size] = vals
        indices[nnz:nnz + vals.size] = cols
        np.cumsum(per_row, out=indptr[start + 1:stop + 1])
        indptr[start + 1:stop + 1] += nnz
        nnz += vals.size
    if data.size > 1.02 * nnz + 1024:  # do not keep a large unused tail alive
        data, indices = data[:nnz].copy(), indices[:nnz].copy()
    else:
        data, indices = data[:nnz], indices[:nnz]
    if nnz < 2**31 - 1:
        indptr = indptr.astype(np.int32)
    return sp.csr_matrix((data, indices, indptr), shape=(N, G))


# --------------------------------------------------------------------------------------------------
# image
# --------------------------------------------------------------------------------------------------


def _pixel_scale(p: dict[str, Any], tissue: _Tissue) -> tuple[float, float]:
    """(pitch in full-res px, fullres_scale): natural Visium/Xenium scale unless shrunk for an image."""
    natural = {"visium": VISIUM_PITCH_PX, "square": HD_PITCH_PX}.get(p["layout"], SCATTER_PITCH_PX)
    if p["fullres_scale"] is not None:
        scale = p["fullres_scale"]
    elif p["image"]:
        side = (float(tissue.extent.max()) + 2 * MARGIN_PITCHES) * natural
        target = p["image_size"] or DEFAULT_IMAGE_SIDE
        scale = target / side if p["image_size"] else min(1.0, target / side)
    else:
        scale = 1.0
    return natural * scale, scale


def _image_shape(tissue: _Tissue, pitch_px: float) -> tuple[int, int]:
    w = int(math.ceil((tissue.extent[0] + 2 * MARGIN_PITCHES) * pitch_px))
    h = int(math.ceil((tissue.extent[1] + 2 * MARGIN_PITCHES) * pitch_px))
    return h, w


def _render_image(p: dict[str, Any], prog: _Programme, tissue: _Tissue, pitch_px: float) -> np.ndarray:
    """H&E-like RGB uint8 image (H, W, 3) in full-res pixels; texture depends on the domain."""
    import cv2

    rng = _rng(p["seed"], p["tissue_seed"], 6)
    K = p["n_domains"]
    tex = {k: np.asarray(v, dtype=np.float64) for k, v in prog.texture.items()}
    if p["image_mode"] == "uninformative":  # one texture everywhere (the middle of each range)
        tex = {k: np.full(K, float(np.median(v))) for k, v in tex.items()}
        tex["angle"] = np.full(K, float(prog.texture["angle"][0]))
    H, W = _image_shape(tissue, pitch_px)
    f = max(1, int(math.ceil(max(H, W) / 512)))
    ch, cw = int(math.ceil(H / f)), int(math.ceil(W / f))
    # coarse grid in spot spacings
    gy, gx = np.mgrid[0:ch, 0:cw].astype(np.float64)
    pts = np.stack([(gx.ravel() + 0.5) * f / pitch_px - MARGIN_PITCHES,
                    (gy.ravel() + 0.5) * f / pitch_px - MARGIN_PITCHES], 1)
    # tissue: inside the outline grown by ~0.7 spot spacing, with a soft edge
    radius = math.sqrt(p["n_spots"] * _SQRT3_2 / math.pi)
    edge = (tissue.outline(pts) - 1.0) * radius  # ~ spot spacings outside the outermost spots
    tissue_c = np.clip((0.9 - edge) / 0.4, 0.0, 1.0).reshape(ch, cw).astype(np.float32)
    memb_c = tissue.membership(pts).reshape(ch, cw, K)

    def up(a):
        return cv2.resize(np.ascontiguousarray(a, dtype=np.float32), (W, H), interpolation=cv2.INTER_LINEAR)

    # smooth parts at the coarse resolution: tissue mask, eosin tint, slow staining variation
    lowfreq = rng.standard_normal((ch, cw), dtype=np.float32)
    lowfreq = cv2.GaussianBlur(lowfreq, (0, 0), sigmaX=max(1.0, 1.5 * pitch_px / f))
    lowfreq /= max(float(lowfreq.std()), 1e-6)
    shade = up(1.0 + memb_c @ tex["tint"].astype(np.float32) + 0.03 * lowfreq)  # eosin lightness
    tissue_f = up(tissue_c)
    # fibre stripes of each domain's period, orientation and strength, where that domain is
    yy = np.arange(H, dtype=np.float32)[:, None] / np.float32(pitch_px)
    xx = np.arange(W, dtype=np.float32)[None, :] / np.float32(pitch_px)
    for k in range(K):
        if tex["stripe_amp"][k] <= 0:
            continue
        rows = np.flatnonzero((memb_c[:, :, k] > 1e-3).any(1))
        cols = np.flatnonzero((memb_c[:, :, k] > 1e-3).any(0))
        if rows.size == 0:
            continue
        y0, y1 = rows[0] * f, min(H, (rows[-1] + 1) * f)
        x0, x1 = cols[0] * f, min(W, (cols[-1] + 1) * f)
        th = math.radians(tex["angle"][k])
        freq = np.float32(2 * np.pi / tex["stripe_period"][k])
        wave = np.sin(freq * (xx[:, x0:x1] * np.float32(math.cos(th)) + yy[y0:y1] * np.float32(math.sin(th))))
        wave = np.float32(0.5 * tex["stripe_amp"][k]) * (1.0 + wave)
        wave *= up(memb_c[:, :, k])[y0:y1, x0:x1]
        shade[y0:y1, x0:x1] -= wave
    np.clip(shade, 0.0, 1.2, out=shade)
    # nuclei: Poisson points thinned by the domain's density, ellipses of the domain's shape
    dmax = float(tex["density"].max())
    n_cand = int(rng.poisson(dmax * (H * W) / pitch_px**2))
    cx = rng.uniform(0, W, n_cand)
    cy = rng.uniform(0, H, n_cand)
    ix = np.clip((cx / f).astype(np.int64), 0, cw - 1)
    iy = np.clip((cy / f).astype(np.int64), 0, ch - 1)
    m_at = memb_c[iy, ix]  # (n, K)
    dens = m_at @ tex["density"]
    keep = rng.random(n_cand) < dens / dmax * tissue_c[iy, ix]
    cx, cy, m_at = cx[keep], cy[keep], m_at[keep]
    # each nucleus takes the shape of one domain, drawn from the membership at its centre
    cum = np.cumsum(m_at, 1)
    dom = (rng.random(cx.size)[:, None] * cum[:, -1:] > cum).sum(1).clip(0, K - 1)
    a_ax = tex["radius"][dom] * pitch_px * np.exp(rng.normal(0, 0.15, cx.size))
    b_ax = a_ax / tex["elongation"][dom]
    ang = tex["angle"][dom] + rng.normal(0, 12.0, cx.size)
    inten = rng.uniform(0.65, 1.0, cx.size)
    nuclei = np.zeros((H, W), dtype=np.uint8)
    shift = 4
    sc = 1 << shift
    for x0, y0, a0, b0, t0, v0 in zip(np.round(cx * sc).astype(np.int64), np.round(cy * sc).astype(np.int64),
                                      np.maximum(np.round(a_ax * sc), sc // 2).astype(np.int64),
                                      np.maximum(np.round(b_ax * sc), sc // 2).astype(np.int64), ang,
                                      (inten * 255).astype(np.int64)):
        cv2.ellipse(nuclei, (int(x0), int(y0)), (int(a0), int(b0)), float(t0), 0, 360, int(v0), -1, cv2.LINE_AA, shift)
    alpha = nuclei.astype(np.float32)
    alpha *= np.float32(0.9 / 255.0)
    # compose per channel: eosin (dark..light by shade), nuclei over it, glass outside the tissue
    eosin = (236.0, 168.0, 206.0)
    dark_eosin = (196.0, 96.0, 160.0)
    hema = (78.0, 52.0, 136.0)
    glass = (244.0, 242.0, 246.0)
    out = np.empty((H, W, 3), dtype=np.uint8)
    for c in range(3):
        ch_img = shade * np.float32(eosin[c] - dark_eosin[c])
        ch_img += np.float32(dark_eosin[c])
        ch_img += alpha * (np.float32(hema[c]) - ch_img)
        ch_img -= np.float32(glass[c])
        ch_img *= tissue_f
        ch_img += np.float32(glass[c])
        np.clip(ch_img, 0, 255, out=ch_img)
        out[:, :, c] = ch_img
    return out


def _scalefactors(p: dict[str, Any], shape_hw: tuple[int, int], scale: float) -> dict[str, float]:
    side = max(shape_hw)
    if p["layout"] == "visium":
        spot, fid = VISIUM_SPOT_DIAMETER_PX * scale, VISIUM_FIDUCIAL_DIAMETER_PX * scale
    elif p["layout"] == "square":  # Space Ranger >= 3: the bin edge, and its microns per pixel
        spot, fid = HD_PITCH_PX * scale, VISIUM_FIDUCIAL_DIAMETER_PX / VISIUM_PITCH_PX * 100.0 / HD_MICRONS_PER_PIXEL
    else:
        spot, fid = SCATTER_CELL_DIAMETER_PX * scale, SCATTER_CELL_DIAMETER_PX * scale * 1.615
    out = {
        "tissue_hires_scalef": float(min(0.25, HIRES_MAX_SIDE / side)),
        "tissue_lowres_scalef": float(min(0.075, LOWRES_MAX_SIDE / side)),
        "spot_diameter_fullres": float(spot),
        "fiducial_diameter_fullres": float(fid),
    }
    if p["layout"] == "square":
        out.update(bin_size_um=float(HD_BIN_UM), microns_per_pixel=float(HD_BIN_UM / spot),
                   regist_target_img_scalef=out["tissue_hires_scalef"])
    return out


def _downscale(img: np.ndarray, scalef: float) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    size = (max(1, int(round(w * scalef))), max(1, int(round(h * scalef))))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------


def _hd_barcodes(array_row: np.ndarray, array_col: np.ndarray) -> np.ndarray:
    """Space Ranger's Visium HD bin barcodes, ``s_008um_<row:05d>_<col:05d>-1``."""
    prefix = f"s_{HD_BIN_UM:03d}um_"
    return np.char.add(np.char.add(np.char.add(prefix, np.char.zfill(array_row.astype(str), 5)), "_"),
                       np.char.add(np.char.zfill(array_col.astype(str), 5), "-1"))


def _barcodes(rng: np.random.Generator, n: int, layout: str) -> np.ndarray:
    """Unique Visium-like (16 x ACGT + '-1') or Xenium-like (8 x a-p + '-1') ids."""
    if layout == "visium":
        alphabet, n_char, bits = np.array(list("ACGT")), 16, 2
    else:
        alphabet, n_char, bits = np.array(list("abcdefghijklmnop")), 8, 4
    codes = rng.choice(2 ** (bits * n_char), size=n, replace=False).astype(np.int64)
    digits = (codes[:, None] >> (bits * np.arange(n_char - 1, -1, -1))) & ((1 << bits) - 1)
    chars = np.concatenate([alphabet[digits], np.tile(np.array(["-", "1"]), (n, 1))], 1)
    return np.ascontiguousarray(chars).view(f"<U{n_char + 2}").ravel()


def _simulate(p: dict[str, Any], *, counts: bool = True, render: bool | None = None) -> dict[str, Any]:
    """Build programme, tissue (spots in barcode order), counts and full-res image from resolved params."""
    shares = _target_shares(p)
    tissue = _build_tissue(p, shares)
    # barcodes, and the spots in barcode order (random in space, as Cell Ranger writes them)
    if p["layout"] == "square":  # bin barcodes name their grid position
        obs_names = _hd_barcodes(tissue.array_row, tissue.array_col)
    else:
        obs_names = _barcodes(_rng(p["seed"], p["tissue_seed"], 7), p["n_spots"], p["layout"])
    order = np.argsort(obs_names, kind="stable")
    obs_names = obs_names[order]
    tissue.xy = tissue.xy[order]
    if tissue.array_row is not None:
        tissue.array_row, tissue.array_col = tissue.array_row[order], tissue.array_col[order]
    prog = _build_programme(p)
    membership = tissue.membership(tissue.xy)
    pitch_px, scale = _pixel_scale(p, tissue)
    render = p["image"] if render is None else render
    out = dict(prog=prog, tissue=tissue, membership=membership, obs_names=obs_names, pitch_px=pitch_px,
               scale=scale, image=_render_image(p, prog, tissue, pitch_px) if render else None, X=None,
               expression=_expression_weights(p, membership))
    if counts:
        out["X"] = _sample_counts(p, prog, tissue, out["expression"])
    return out


def _expression_weights(p: dict[str, Any], membership: np.ndarray) -> np.ndarray:
    """Domain weights the counts are built from: the soft membership for spots (a spot mixes the
    cells under it); for single cells and HD bins (``layout`` ``cells``/``square``) one domain per
    cell, drawn from its membership, so cells of two domains intermix at a boundary."""
    if p["layout"] not in ("cells", "square"):
        return membership
    rng = _rng(p["seed"], p["tissue_seed"], 9)
    cum = np.cumsum(membership, 1, dtype=np.float64)
    draw = rng.random(membership.shape[0]) * cum[:, -1]
    dom = np.minimum((draw[:, None] > cum).sum(1), membership.shape[1] - 1)
    onehot = np.zeros_like(membership)
    onehot[np.arange(membership.shape[0]), dom] = 1.0
    return onehot


def _make_slice(p: dict[str, Any]):
    import anndata as ad

    start = logg.info(f"simulating {p['slice_id']}: {p['n_spots']} {p['layout']} spots x {p['n_genes']} genes, "
                      f"{p['n_domains']} {p['pattern']} domains")
    sim = _simulate(p)
    tissue, membership, X, image = sim["tissue"], sim["membership"], sim["X"], sim["image"]
    prog, pitch_px, scale = sim["prog"], sim["pitch_px"], sim["scale"]
    N, K = membership.shape
    names = domain_names(K)
    labels = pd.Categorical.from_codes(np.argmax(membership, 1), categories=names)
    obs = pd.DataFrame(index=pd.Index(sim["obs_names"]))
    if p["layout"] in ("visium", "square"):
        obs["in_tissue"] = np.ones(N, dtype=np.int64)
        obs["array_row"] = tissue.array_row
        obs["array_col"] = tissue.array_col
    obs[TRUTH_KEY] = labels
    obs[GROUND_TRUTH_KEY] = labels.copy()
    if p["layout"] in ("cells", "square"):  # the domain programme each cell expresses (truth: its region)
        obs[EXPRESSED_KEY] = pd.Categorical.from_codes(np.argmax(sim["expression"], 1), categories=names)
    obs[SLICE_KEY] = pd.Categorical.from_codes(np.zeros(N, dtype=np.int8), categories=[p["slice_id"]])
    adata = ad.AnnData(X=X, obs=obs, var=prog.var.copy())
    adata.layers[COUNTS_LAYER] = X.copy()
    adata.obsm[SPATIAL] = ((tissue.xy + MARGIN_PITCHES) * pitch_px).astype(np.float64)
    adata.obsm[MEMBERSHIP_KEY] = membership
    shape_hw = image.shape[:2] if image is not None else _image_shape(tissue, pitch_px)
    sf = _scalefactors(p, shape_hw, scale)
    lib: dict[str, Any] = {
        "scalefactors": sf,
        "metadata": {"chemistry_description": "synthetic", "software_version": "spatialdomains.synthetic",
                     "layout": p["layout"], "fullres_height": int(shape_hw[0]), "fullres_width": int(shape_hw[1])},
    }
    if image is not None:
        lib["images"] = {"hires": _downscale(image, sf["tissue_hires_scalef"]),
                         "lowres": _downscale(image, sf["tissue_lowres_scalef"])}
    adata.uns["spatial"] = {p["slice_id"]: lib}
    adata.uns[MARKERS_KEY] = {k: list(v) for k, v in prog.markers.items()}
    record(adata, SYNTHETIC_STEP, {**p, "fullres_scale_used": scale, "pitch_px": pitch_px,
                                   "domains": names, "shares": np.bincount(labels.codes, minlength=K) / N})
    logg.info(f"    finished: {N} spots, {X.nnz / (N * adata.n_vars):.1%} non-zero", time=start,
              deep="added X, layers['counts'], obs['truth', 'ground_truth', 'slice'], obsm['spatial'], "
                   f"obsm['{MEMBERSHIP_KEY}'], var['marker_of', 'programme'], uns['markers', 'spatial']")
    return adata, image


def make_slice(
    n_spots: int = 3000,
    n_domains: int = 5,
    n_genes: int = 1000,
    *,
    pattern: str = "layers",
    layout: str = "visium",
    n_markers_per_domain: int = 20,
    random_state: int = 0,
    tissue_seed: int | None = None,
    slice_id: str = "slice0",
    batch_effect: float = 0.0,
    batch_seed: int | None = None,
    image: bool = False,
    image_mode: str = "informative",
    image_size: int | None = None,
    fullres_scale: float | None = None,
    boundary_width: float = 2.0,
    marker_lfc: Sequence[float] = (0.5, 1.3),
    shared_marker_fraction: float = 0.3,
    n_nuisance: int | None = None,
    nuisance_strength: float = 0.3,
    library_size: float | None = None,
    library_sd: float = 0.45,
    overdispersion: float = 0.35,
    dropout: float = 0.1,
    mt_fraction: float = 0.08,
    n_jobs: int = 1,
    seed: int | None = None,
):
    """Simulate one tissue slice with known spatial domains.

    Parameters
    ----------
    n_spots
        Number of spots (cells for ``layout="scatter"``), exactly; 300 to 1M work.
    n_domains
        Number of planted domains ``K``, labelled ``D0``..``D{K-1}`` (``D0`` = the outermost layer).
    n_genes
        Number of genes, mitochondrial ones (``MT-*``, last) included.
    pattern
        ``"layers"``: curved parallel bands of unequal width (cortex-like); ``"blobs"``: irregular patches.
    layout
        ``"visium"``: hex lattice with ``obs['array_row'/'array_col']``, spot pitch 137 full-res px;
        ``"scatter"``: jittered cells ~47 px apart (Xenium-like). Beyond Visium's 4,992 spots the
        lattice simply grows.
    n_markers_per_domain
        Planted marker genes per domain (shrunk, with a warning, when the genes cannot hold them).
    random_state
        Programme seed: genes, markers, dispersion and texture. Slices with one ``random_state`` share
        them. (``seed=`` is the deprecated name.)
    tissue_seed
        Seed of the outline, domain geometry and counts (default 0).
    slice_id
        ``obs['slice']`` and the ``uns['spatial']`` library id.
    batch_effect, batch_seed
        Sd of the per-slice log-normal gene-wise shift (and of the library-size shift); its seed
        (default ``tissue_seed + 1``).
    image, image_mode
        Render an H&E-like image; ``"uninformative"`` gives the same texture in every domain.
    image_size, fullres_scale
        Full-res pixel units: by default the natural scale (137 px per Visium spot spacing), except
        with ``image=True``, where pixel units shrink so the image's longest side is at most 2000 px
        (exactly ``image_size`` when given). ``fullres_scale`` overrides both.
    boundary_width
        10-90 % width of the soft blend between domains, in spot spacings.
    marker_lfc
        Range of the natural-log fold change of a marker in its domain.
    shared_marker_fraction
        Fraction of each domain's markers also raised (30-60 % of the fold) in the adjacent layer(s)
        (blobs: one other domain).
    n_nuisance, nuisance_strength
        Nuisance programmes (default ``max(2, K)``) whose per-spot activity is independent of space,
        like cell-composition noise, and their log-scale loading.
    library_size, library_sd
        Mean UMIs per spot (default 2000 Visium, 300 scatter) and the log-normal sd across spots.
    overdispersion
        Median NB overdispersion ``phi`` (var = mu + phi mu^2); per gene log-normal around it.
    dropout
        Extra zero inflation: a count is zeroed with probability ``dropout / (1 + mu)``.
    mt_fraction
        Expected fraction of UMIs from ``MT-`` genes.
    n_jobs
        Threads sampling the counts (chunks of ~4M entries, each with its own random stream, so the
        result does not depend on ``n_jobs``).

    Returns
    -------
    AnnData with ``X`` and ``layers['counts']`` (CSR float32 counts), ``obs['truth']`` and
    ``obs['ground_truth']`` (categorical ``D*``), ``obs['slice']``, ``obs['array_row'/'array_col'/'in_tissue']``
    (Visium), ``obsm['spatial']`` (float64 (x, y) full-res px), ``obsm['synthetic_membership']``
    ((N, K) float32), ``var['programme', 'marker_of', 'role', 'mt']``, ``uns['markers']``
    ({domain: genes}), ``uns['spatial'][slice_id]`` (``scalefactors``, ``metadata``, and
    ``images['hires'/'lowres']`` with ``image=True``) and ``uns['spatialdomains']['synthetic']``
    (every parameter). The full-resolution image is :func:`fullres_image` of the result.
    """
    p = _resolve_params(
        n_spots, n_domains, n_genes, pattern=pattern, layout=layout, n_markers_per_domain=n_markers_per_domain,
        seed=_random_state(random_state, seed, "make_slice"), tissue_seed=tissue_seed, slice_id=slice_id, batch_effect=batch_effect, batch_seed=batch_seed,
        image=image, image_mode=image_mode, image_size=image_size, fullres_scale=fullres_scale,
        boundary_width=boundary_width, marker_lfc=marker_lfc, shared_marker_fraction=shared_marker_fraction,
        n_nuisance=n_nuisance, nuisance_strength=nuisance_strength, library_size=library_size,
        library_sd=library_sd, overdispersion=overdispersion, dropout=dropout, mt_fraction=mt_fraction,
        n_jobs=n_jobs,
    )
    return _make_slice(p)[0]


def fullres_image(adata, library_id: str | None = None) -> np.ndarray:
    """Re-render the full-resolution H&E image (H, W, 3) uint8 of a synthetic slice.

    Deterministic: it rebuilds the tissue from ``uns['spatialdomains']['synthetic']``, so it equals
    the image :func:`simulate_to_dir` writes, and ``hires`` is this image downscaled by
    ``tissue_hires_scalef``. ``obsm['spatial']`` is in this image's pixels.
    """
    p = _stored_params(adata, library_id)
    if not p.get("image"):
        raise InputError("this synthetic slice was made with image=False: no image to render")
    return _simulate(p, counts=False, render=True)["image"]


def _stored_params(adata, library_id: str | None = None) -> dict[str, Any]:
    entry = adata.uns.get(UNS_KEY, {}).get(SYNTHETIC_STEP)
    if entry is None:
        raise InputError(f"uns['{UNS_KEY}']['{SYNTHETIC_STEP}'] is missing: not a spatialdomains.synthetic slice")
    p = dict(entry)
    if library_id is not None and str(p.get("slice_id")) != library_id:
        raise InputError(f"library_id {library_id!r} is not this slice ({p.get('slice_id')!r})")
    defaults = {"tissue_seed": 0, "batch_seed": None, "image_size": None, "fullres_scale": None}
    for k, v in defaults.items():
        p.setdefault(k, v)
    for k in ("n_spots", "n_domains", "n_genes", "n_markers_per_domain", "seed", "tissue_seed", "n_nuisance",
              "nuisance_size", "n_mt", "n_gradient"):
        p[k] = int(p[k])
    p["marker_lfc"] = [float(v) for v in np.asarray(p["marker_lfc"]).ravel()]
    p["image"] = bool(p["image"])
    return p


def make_slices(
    n_slices: int = 2,
    n_spots: int | Sequence[int] = 3000,
    n_domains: int = 5,
    n_genes: int = 1000,
    *,
    batch_effect: float = 0.3,
    random_state: int = 0,
    seed: int | None = None,
    **kwargs,
) -> list:
    """Slices of one experiment: shared programme and domain structure, per-slice tissue and batch.

    Slice ``i`` is ``make_slice(random_state=random_state, tissue_seed=i, batch_seed=i + 1,
    slice_id=f"slice{i}")``:
    same genes, markers, texture and layer widths; a different outline, orientation, curvature and
    counts; and its own gene-wise batch shift of sd ``batch_effect``. ``n_spots`` may be a list.
    Other keyword arguments go to :func:`make_slice`.
    """
    return [a for a, _ in _make_slices(n_slices, n_spots, n_domains, n_genes, batch_effect=batch_effect,
                                       seed=_random_state(random_state, seed, "make_slices"), **kwargs)]


def _slices_params(n_slices, n_spots, n_domains, n_genes, *, batch_effect, seed, **kwargs) -> list[dict[str, Any]]:
    """Resolved parameters of slice ``i`` = 0..n_slices-1: ``tissue_seed=i``, ``batch_seed=i + 1``, ``slice<i>``."""
    if int(n_slices) < 1:
        raise InputError(f"n_slices must be >= 1, got {n_slices}")
    sizes = [int(n_spots)] * int(n_slices) if np.isscalar(n_spots) else [int(v) for v in n_spots]
    if len(sizes) != int(n_slices):
        raise InputError(f"n_spots lists {len(sizes)} sizes for {n_slices} slices")
    for bad in ("tissue_seed", "batch_seed", "slice_id"):
        if bad in kwargs:
            raise InputError(f"make_slices sets {bad} per slice; do not pass it")
    return [_resolve_params(n, n_domains, n_genes, seed=seed, tissue_seed=i, batch_seed=i + 1, slice_id=f"slice{i}",
                            batch_effect=batch_effect, **{**_make_slice_defaults(), **kwargs})
            for i, n in enumerate(sizes)]


def _make_slices(n_slices, n_spots, n_domains, n_genes, *, batch_effect, seed, **kwargs):
    return [_make_slice(p) for p in _slices_params(n_slices, n_spots, n_domains, n_genes, batch_effect=batch_effect,
                                                   seed=seed, **kwargs)]


def _make_slice_defaults() -> dict[str, Any]:
    """Keyword defaults of :func:`make_slice` that :func:`make_slices` passes on (one source)."""
    import inspect

    skip = {"n_spots", "n_domains", "n_genes", "seed", "random_state", "tissue_seed", "batch_seed", "slice_id",
            "batch_effect"}
    return {k: v.default for k, v in inspect.signature(make_slice).parameters.items() if k not in skip}


def gene_sets(adata, *, n_decoys: int = 5, random_state: int = 0) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Gene sets of a synthetic slice and their descriptions, for :func:`spatialdomains.analysis.write_gmt`.

    One ``PROGRAMME_<domain>`` per planted marker programme, the nuisance programmes (``NUISANCE_<i>``,
    spatially random) and ``n_decoys`` random ``DECOY_<i>`` sets of background genes (the median
    programme size). ``adata`` needs ``var['programme']`` (any :func:`make_slice` result).
    """
    var = adata.var
    if "programme" not in var:
        raise InputError("var['programme'] is missing: not a spatialdomains.synthetic slice")
    sets: dict[str, list[str]] = {}
    desc: dict[str, str] = {}
    prog = var["programme"].astype(str)
    for name in sorted(set(prog)):
        if name.startswith(("PROGRAMME_", "NUISANCE_")):
            sets[name] = [str(g) for g in var.index[(prog == name).to_numpy()]]
            desc[name] = f"planted markers of domain {name.split('_', 1)[1]}" if name.startswith("PROGRAMME_") \
                else "nuisance programme (no spatial structure)"
    size = max(5, int(np.median([len(v) for v in adata.uns.get(MARKERS_KEY, {"x": [0] * 10}).values()])))
    background = var.index[(prog == "BACKGROUND").to_numpy()].to_numpy()
    rng = _rng(random_state, 8)
    for i in range(n_decoys):
        sets[f"DECOY_{i + 1}"] = sorted(rng.choice(background, min(size, len(background)), replace=False).tolist())
        desc[f"DECOY_{i + 1}"] = "random background genes"
    return sets, desc


def write_gmt(path: str | os.PathLike, adata, *, n_decoys: int = 5, seed: int = 0) -> Path:
    """Deprecated (until 0.3): ``analysis.write_gmt(path, *synthetic.gene_sets(adata))`` does the same."""
    import warnings

    from .analysis import write_gmt as _write

    warnings.warn("synthetic.write_gmt is deprecated; use analysis.write_gmt(path, *synthetic.gene_sets(adata))",
                  DeprecationWarning, stacklevel=2)
    return _write(path, *gene_sets(adata, n_decoys=n_decoys, random_state=seed))


def _write_image(path: Path, image: np.ndarray) -> Path:
    suffix = path.suffix.lower()
    if suffix in (".png", ".jpg"):
        import cv2

        flags = [cv2.IMWRITE_PNG_COMPRESSION, 9] if suffix == ".png" else [cv2.IMWRITE_JPEG_QUALITY, 92]
        with atomic_path(path) as tmp:
            if not cv2.imwrite(str(tmp), np.ascontiguousarray(image[:, :, ::-1]), flags):
                raise InputError(f"could not write {path}")
        return path
    import tifffile

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, image, photometric="rgb", compression="zlib", predictor=True)
    return path


# --------------------------------------------------------------------------------------------------
# real instrument formats: Visium HD (Space Ranger >= 3) bins and Xenium Onboard Analysis cells
# --------------------------------------------------------------------------------------------------

SIM_FORMATS = ("h5ad", "visium_hd", "xenium")  #: what :func:`simulate_to_dir` writes per slice
FORMAT_LAYOUT = {"visium_hd": "square", "xenium": "cells"}
FORMAT_PLATFORM = {"h5ad": None, "visium_hd": "visium_hd", "xenium": "xenium"}
TRUTH_SUFFIX = "_truth.csv"  #: ``<slice>_truth.csv`` beside the instrument folder: ``barcode,truth``
XENIUM_CONTROLS = (  #: (feature_type, name prefix, how many, mean count per cell), as Xenium panels carry
    ("Negative Control Probe", "NegControlProbe_", 20, 0.01),
    ("Negative Control Codeword", "NegControlCodeword_", 10, 0.005),
    ("Unassigned Codeword", "UnassignedCodeword_", 10, 0.005),
)
_H5_CHUNK = 1 << 16  # values per HDF5 chunk of matrix/data and matrix/indices
_GENOME = "GRCh38"


def _features_table(prog: _Programme) -> pd.DataFrame:
    """Gene Expression features of a programme: ``id``, ``name``, ``feature_type``, ``genome``."""
    var = prog.var
    return pd.DataFrame({"id": var["gene_ids"].astype(str).to_numpy(), "name": var.index.astype(str).to_numpy(),
                         "feature_type": "Gene Expression", "genome": _GENOME})


def _write_10x_h5(path: Path, chunks: Iterator, *, barcodes: np.ndarray, features: pd.DataFrame,
                  attrs: dict[str, Any]) -> np.ndarray:
    """Stream CSR row chunks into a Cell Ranger >= 3 feature-barcode h5, written atomically.

    Layout: ``matrix/{barcodes, data (int32), indices (int64), indptr (int64), shape (int32: features,
    barcodes), features/{_all_tag_keys, feature_type, genome, id, name}}``; rows (barcodes) are the
    CSC columns, so each chunk of spots appends to ``data``/``indices``. Returns the per-barcode
    totals of each ``feature_type`` ((N, T) int64, in order of first appearance).
    """
    import h5py

    n = len(barcodes)
    ftypes = list(dict.fromkeys(features["feature_type"]))
    type_of = pd.Categorical(features["feature_type"], categories=ftypes).codes.astype(np.int64)
    totals = np.zeros((n, len(ftypes)), dtype=np.int64)
    indptr = np.zeros(n + 1, dtype=np.int64)
    enc = lambda values: np.asarray([str(v).encode() for v in values])  # noqa: E731  (fixed-length bytes)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for key, value in attrs.items():
            f.attrs[key] = value
        g = f.create_group("matrix")
        g.create_dataset("barcodes", data=enc(barcodes))
        kw = dict(maxshape=(None,), chunks=(_H5_CHUNK,), compression="gzip", compression_opts=1, shuffle=True)
        data = g.create_dataset("data", shape=(0,), dtype=np.int32, **kw)
        indices = g.create_dataset("indices", shape=(0,), dtype=np.int64, **kw)
        nnz = 0
        for start, stop, vals, cols, per_row in chunks:
            data.resize((nnz + vals.size,))
            indices.resize((nnz + vals.size,))
            data[nnz:] = vals.astype(np.int32)
            indices[nnz:] = cols
            np.cumsum(per_row, out=indptr[start + 1:stop + 1])
            indptr[start + 1:stop + 1] += nnz
            rows = np.repeat(np.arange(stop - start), per_row)
            totals[start:stop] += np.bincount(rows * len(ftypes) + type_of[cols], weights=vals,
                                              minlength=(stop - start) * len(ftypes)).reshape(-1, len(ftypes)
                                                                                            ).astype(np.int64)
            nnz += vals.size
        g.create_dataset("indptr", data=indptr)
        g.create_dataset("shape", data=np.array([len(features), n], dtype=np.int32))
        feats = g.create_group("features")
        feats.create_dataset("_all_tag_keys", data=np.array([b"genome"]))
        for key in ("feature_type", "genome", "id", "name"):
            feats.create_dataset(key, data=enc(features[key]))
    return totals


def _with_controls(p: dict[str, Any], chunks: Iterator, n_genes: int) -> Iterator:
    """Append Poisson counts of the Xenium control features (columns after the genes) to each chunk."""
    rates = np.concatenate([np.full(n, rate) for _, _, n, rate in XENIUM_CONTROLS])
    for i, (start, stop, vals, cols, per_row) in enumerate(chunks):
        crng = _rng(p["seed"], p["tissue_seed"], 10, i)
        ctrl = sp.csr_matrix(crng.poisson(rates, (stop - start, rates.size)).astype(np.float32))
        genes = sp.csr_matrix((vals, cols, np.concatenate([[0], np.cumsum(per_row)])), shape=(stop - start, n_genes))
        both = sp.hstack([genes, ctrl], format="csr")
        both.sort_indices()
        yield start, stop, both.data, both.indices.astype(np.int64), np.diff(both.indptr)


def _write_truth(path: Path, barcodes: np.ndarray, labels: pd.Categorical) -> Path:
    return write_csv_atomic(pd.DataFrame({"barcode": barcodes, TRUTH_KEY: np.asarray(labels).astype(str)}), path,
                            index=False)


def _write_visium_hd(p: dict[str, Any], out: Path, sim: dict[str, Any]) -> Path:
    """``out/outs/binned_outputs/square_008um/`` (+ ``outs/spatial/``, ``outs/feature_slice.h5``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tissue, prog, pitch = sim["tissue"], sim["prog"], sim["pitch_px"]
    outs = out / "outs"
    bin_dir = outs / "binned_outputs" / f"square_{HD_BIN_UM:03d}um"
    spatial = bin_dir / "spatial"
    spatial.mkdir(parents=True, exist_ok=True)
    chunks = _count_chunks(p, prog, tissue, sim["expression"])
    attrs = {"chemistry_description": "Visium HD v1", "filetype": "matrix", "library_ids": np.array([p["slice_id"].encode()]),
             "original_gem_groups": np.array([1]), "software_version": "spaceranger-3.1.1 (spatialdomains.synthetic)",
             "version": 2}
    _write_10x_h5(bin_dir / "filtered_feature_bc_matrix.h5", chunks, barcodes=sim["obs_names"],
                  features=_features_table(prog), attrs=attrs)
    # positions of every bin of the tissue's bounding box (off-tissue bins with in_tissue = 0), in
    # barcode order = (row, col) order, as Space Ranger lists the capture area
    n_rows, n_cols = int(tissue.array_row.max()) + 1, int(tissue.array_col.max()) + 1
    rows, cols = np.divmod(np.arange(n_rows * n_cols, dtype=np.int64), n_cols)
    in_tissue = np.zeros(n_rows * n_cols, dtype=np.int32)
    in_tissue[tissue.array_row * n_cols + tissue.array_col] = 1
    table = pa.table({
        "barcode": _hd_barcodes(rows, cols),
        "in_tissue": in_tissue,
        "array_row": rows.astype(np.int32),
        "array_col": cols.astype(np.int32),
        "pxl_row_in_fullres": (rows + MARGIN_PITCHES) * pitch,
        "pxl_col_in_fullres": (cols + MARGIN_PITCHES) * pitch,
    })
    with atomic_path(spatial / "tissue_positions.parquet") as tmp:
        pq.write_table(table, tmp)
    del table, rows, cols, in_tissue
    sf = _scalefactors(p, _image_shape(tissue, pitch), sim["scale"])
    for folder in (spatial, outs / "spatial"):
        write_text_atomic(folder / "scalefactors_json.json", json.dumps(sf, indent=2) + "\n")
    _write_feature_slice_stub(outs / "feature_slice.h5", p)
    return out


def _write_feature_slice_stub(path: Path, p: dict[str, Any]) -> None:
    """``feature_slice.h5`` with only its metadata attribute (the 2 um matrix itself is not written):
    readers such as spatialdata-io take the layout version from it."""
    import h5py

    layout = {"file_format": "1.0", "transform": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]}
    eye = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    meta = {"hd_layout_json": json.dumps(layout), "sample_id": p["slice_id"],
            "transform_matrices": {k: eye for k in ("cytassist_colrow_to_spot_colrow", "spot_colrow_to_cytassist_colrow",
                                                    "microscope_colrow_to_spot_colrow",
                                                    "spot_colrow_to_microscope_colrow")}}
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["metadata_json"] = json.dumps(meta)


def _write_xenium(p: dict[str, Any], out: Path, sim: dict[str, Any]) -> Path:
    """``out/`` as Xenium Onboard Analysis writes it: ``cell_feature_matrix.h5``, ``cells.parquet``,
    ``experiment.xenium`` (no transcripts, boundaries or morphology images)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tissue, prog = sim["tissue"], sim["prog"]
    out.mkdir(parents=True, exist_ok=True)
    G = p["n_genes"]
    features = [_features_table(prog)]
    for ftype, prefix, n, _ in XENIUM_CONTROLS:
        names = [f"{prefix}{i:04d}" for i in range(n)]
        features.append(pd.DataFrame({"id": names, "name": names, "feature_type": ftype, "genome": "Unknown"}))
    features = pd.concat(features, ignore_index=True)
    chunks = _with_controls(p, _count_chunks(p, prog, tissue, sim["expression"]), G)
    attrs = {"filetype": "matrix", "library_ids": np.array([p["slice_id"].encode()]), "original_gem_groups": np.array([1]),
             "software_version": "xenium-2.0.0.10 (spatialdomains.synthetic)", "version": 2}
    totals = _write_10x_h5(out / "cell_feature_matrix.h5", chunks, barcodes=sim["obs_names"], features=features,
                           attrs=attrs)
    xy_um = (tissue.xy + MARGIN_PITCHES) * (sim["pitch_px"] * XENIUM_PIXEL_UM)
    rng = _rng(p["seed"], p["tissue_seed"], 11)
    area = (CELL_PITCH_UM ** 2 * 0.8) * np.exp(rng.normal(0.0, 0.3, len(xy_um)))
    by_type = dict(zip(features["feature_type"].unique(), totals.T))
    zero = np.zeros(len(xy_um), dtype=np.int64)
    gene = by_type["Gene Expression"]
    probe = by_type.get("Negative Control Probe", zero)
    codeword = by_type.get("Negative Control Codeword", zero)
    unassigned = by_type.get("Unassigned Codeword", zero)
    table = pa.table({
        "cell_id": sim["obs_names"].astype(str),
        "x_centroid": xy_um[:, 0],
        "y_centroid": xy_um[:, 1],
        "transcript_counts": gene.astype(np.int64),
        "control_probe_counts": probe.astype(np.int64),
        "genomic_control_counts": zero,
        "control_codeword_counts": codeword.astype(np.int64),
        "unassigned_codeword_counts": unassigned.astype(np.int64),
        "deprecated_codeword_counts": zero,
        "total_counts": (gene + probe + codeword + unassigned).astype(np.int64),
        "cell_area": area,
        "nucleus_area": area * np.clip(rng.normal(0.35, 0.05, len(xy_um)), 0.15, 0.6),
    })
    with atomic_path(out / "cells.parquet") as tmp:
        pq.write_table(table, tmp)
    experiment = {
        "major_version": 5, "minor_version": 0, "patch_version": 0, "run_name": f"synthetic_{p['slice_id']}",
        "run_start_time": "2024-01-01T00:00:00Z", "region_name": p["slice_id"], "preservation_method": "ffpe",
        "num_cells": int(len(xy_um)), "transcripts_per_cell": int(np.median(gene)) if len(gene) else 0,
        "transcripts_per_100um": None, "cassette_name": "synthetic", "slide_id": "0000000",
        "panel_design_id": "synthetic", "panel_name": f"synthetic {G}-gene panel", "panel_organism": "Human",
        "panel_num_targets_predesigned": int(G), "panel_num_targets_custom": 0, "pixel_size": XENIUM_PIXEL_UM,
        "instrument_sn": "synthetic", "instrument_sw_version": "2.0.0", "analysis_sw_version": "xenium-2.0.0.10",
        "experiment_uuid": "", "cassette_uuid": "", "roi_uuid": "", "z_step_size": 3.0, "well_uuid": "",
        "calibration_uuid": "", "images": {}, "xenium_explorer_files": {},
    }
    write_text_atomic(out / "experiment.xenium", json.dumps(experiment, indent=4) + "\n")
    return out


def _write_format(p: dict[str, Any], out: Path, fmt: str) -> tuple[Path, Path]:
    """Simulate the slice of ``p`` (counts streamed, never held whole) into instrument folder ``out``
    and its truth file ``<out>_truth.csv``; returns both paths."""
    start = logg.info(f"writing {fmt} slice {p['slice_id']}: {p['n_spots']} {p['layout']} x {p['n_genes']} genes "
                      f"to {out}")
    sim = _simulate(p, counts=False, render=False)
    labels = pd.Categorical.from_codes(np.argmax(sim["membership"], 1), categories=domain_names(p["n_domains"]))
    writer = {"visium_hd": _write_visium_hd, "xenium": _write_xenium}[fmt]
    writer(p, out, sim)
    truth = _write_truth(out.parent / f"{out.name}{TRUTH_SUFFIX}", sim["obs_names"], labels)
    logg.info("    finished", time=start, deep=f"wrote {out} and {truth}")
    return out, truth


def _format_kwargs(fmt: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """:func:`make_slice` keywords of an instrument format: its layout, no image, cell-level variation."""
    if fmt not in FORMAT_LAYOUT:
        raise InputError(f"format must be one of {', '.join(FORMAT_LAYOUT)}, got {fmt!r}")
    for bad in ("layout", "image"):
        if bad in kwargs:
            raise InputError(f"format={fmt!r} sets {bad}; do not pass it")
    return {"nuisance_strength": 0.6, **kwargs, "layout": FORMAT_LAYOUT[fmt], "image": False}


def _format_params(fmt: str, n: int, n_domains: int, n_genes: int, *, random_state: int = 0, tissue_seed: int = 0,
                   batch_seed: int | None = None, slice_id: str = "slice0", batch_effect: float = 0.0,
                   **kwargs) -> dict[str, Any]:
    """Parameters of one instrument-format slice; the keywords of :func:`write_visium_hd`/:func:`write_xenium`."""
    return _resolve_params(n, n_domains, n_genes, seed=random_state, tissue_seed=tissue_seed, batch_seed=batch_seed,
                           slice_id=slice_id, batch_effect=batch_effect,
                           **{**_make_slice_defaults(), **_format_kwargs(fmt, kwargs)})


def write_visium_hd(out_dir: str | os.PathLike, n_bins: int = 500_000, n_genes: int = 18_000, n_domains: int = 7,
                   **kwargs) -> tuple[Path, Path]:
    """Write a synthetic Visium HD sample (8 um bins) as Space Ranger >= 3 lays it out.

    Files, under ``out_dir``: ``outs/binned_outputs/square_008um/filtered_feature_bc_matrix.h5``
    (Cell Ranger >= 3 h5, ``Gene Expression`` features only, bin barcodes
    ``s_008um_<row:05d>_<col:05d>-1``), ``.../spatial/tissue_positions.parquet`` (columns ``barcode,
    in_tissue, array_row, array_col, pxl_row_in_fullres, pxl_col_in_fullres``; every bin of the
    tissue's bounding box, off-tissue ones with ``in_tissue = 0``), ``.../spatial/scalefactors_json.json``
    (also in ``outs/spatial/``; ``bin_size_um``, ``microns_per_pixel``, ``spot_diameter_fullres`` =
    the bin edge in pixels), and ``outs/feature_slice.h5`` holding only its ``metadata_json``
    attribute. No images. Beside ``out_dir``: ``<name>_truth.csv`` (``barcode,truth``: the domain
    whose region holds the bin).

    The tissue is ``make_slice(layout="square")``: bins on a square grid, one domain per bin drawn from
    the soft membership (so bins of two domains intermix at a boundary), NB counts (library size 200
    by default) and nuisance programmes at ``nuisance_strength=0.6`` (cell-to-cell variation). Counts
    are generated and written per chunk of ~4M bin x gene entries: memory is O(N + chunk), never
    O(N x G) or O(nnz).

    Keywords: ``random_state`` (programme, default 0), ``tissue_seed`` (outline, domains, counts;
    default 0), ``slice_id`` (default ``"slice0"``: ``library_ids`` of the h5), ``batch_effect``
    (default 0) and ``batch_seed``, ``n_jobs`` (threads sampling the counts; same result), and any
    other :func:`make_slice` keyword except ``layout`` and ``image``.

    Returns
    -------
    ``(sample folder, truth file)``; ``spatialdomains.io.read(folder, platform="visium_hd",
    truth=truth_file)`` reads it back.
    """
    p = _format_params("visium_hd", n_bins, n_domains, n_genes, **kwargs)
    return _write_format(p, Path(out_dir), "visium_hd")


def write_xenium(out_dir: str | os.PathLike, n_cells: int = 1_000_000, n_genes: int = 300, n_domains: int = 7,
                 **kwargs) -> tuple[Path, Path]:
    """Write a synthetic Xenium output folder (single cells) as Xenium Onboard Analysis lays it out.

    Files, in ``out_dir``: ``cell_feature_matrix.h5`` (Cell Ranger >= 3 h5: ``n_genes`` ``Gene
    Expression`` features, then 20 ``Negative Control Probe``, 10 ``Negative Control Codeword`` and 10
    ``Unassigned Codeword`` features with a few counts), ``cells.parquet`` (``cell_id, x_centroid,
    y_centroid`` in microns, ``transcript_counts``, the control counts, ``total_counts``,
    ``cell_area``, ``nucleus_area``, same order as the matrix) and ``experiment.xenium`` (JSON,
    ``pixel_size`` 0.2125). No transcripts, boundaries or morphology images. Beside ``out_dir``:
    ``<name>_truth.csv`` (``barcode,truth``).

    The tissue is ``make_slice(layout="cells")``: irregular cell centroids about 10 um apart (no
    lattice), one domain per cell drawn from the soft membership, NB counts (200 per cell by default)
    and nuisance programmes at ``nuisance_strength=0.6``. Counts are generated and written per chunk
    (memory O(N + chunk)). Keywords as :func:`write_visium_hd`.

    Returns
    -------
    ``(folder, truth file)``; ``spatialdomains.io.read(folder, platform="xenium", truth=truth_file)``
    reads it back.
    """
    p = _format_params("xenium", n_cells, n_domains, n_genes, **kwargs)
    return _write_format(p, Path(out_dir), "xenium")


def simulate_to_dir(
    out_dir: str | os.PathLike,
    *,
    n_spots: int | Sequence[int] = 3000,
    n_slices: int = 2,
    n_domains: int = 5,
    n_genes: int = 1000,
    image: bool = False,
    random_state: int = 0,
    pattern: str = "layers",
    layout: str = "visium",
    batch_effect: float = 0.3,
    group: str = "group1",
    platform: str = "visium",
    gmt: bool = True,
    image_format: str = "tif",
    counts_layer: bool = True,
    format: str = "h5ad",
    seed: int | None = None,
    **kwargs,
) -> Path:
    """Write a ready-to-run synthetic experiment and return its sample sheet.

    ``format="h5ad"`` writes (atomically) ``slice<i>.h5ad``; with ``image=True`` ``slice<i>_fullres.tif``
    (or ``.png`` with ``image_format="png"``), the full-resolution H&E image in whose pixels
    ``obsm['spatial']`` is given. ``format="visium_hd"`` / ``"xenium"`` writes each slice as the
    instrument does instead (folder ``slice<i>/``, see :func:`write_visium_hd` / :func:`write_xenium`;
    ``layout`` and ``platform`` follow from the format, no image) plus ``slice<i>_truth.csv``, one slice
    at a time with the counts streamed to disk. Always: ``samplesheet.csv`` with columns
    ``sample,group,data,image,platform,truth,n_domains`` (paths relative to the sheet's folder;
    ``truth`` = the ``obs`` column ``truth`` or the truth file) and with ``gmt=True`` ``genesets.gmt``
    (:func:`gene_sets`). Other keyword arguments go to :func:`make_slice`.
    """
    if image_format not in IMAGE_FORMATS:
        raise InputError(f"image_format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}")
    if format not in SIM_FORMATS:
        raise InputError(f"format must be one of {', '.join(SIM_FORMATS)}, got {format!r}")
    random_state = _random_state(random_state, seed, "simulate_to_dir")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = logg.info(f"writing {n_slices} synthetic slice(s) ({format}) to {out}")
    rows = []
    if format == "h5ad":
        slices = _make_slices(n_slices, n_spots, n_domains, n_genes, batch_effect=batch_effect, seed=random_state,
                              image=image, pattern=pattern, layout=layout, **kwargs)
        for adata, img in slices:
            sid = str(adata.obs[SLICE_KEY].iloc[0])
            if not counts_layer:  # X holds the counts already; readers copy X to layers['counts']
                del adata.layers[COUNTS_LAYER]
            write_h5ad_atomic(adata, out / f"{sid}.h5ad")
            image_rel = ""
            if img is not None:
                image_rel = f"{sid}_fullres.{image_format}"
                _write_image(out / image_rel, img)
            rows.append(dict(sample=sid, group=group, data=f"{sid}.h5ad", image=image_rel, platform=platform,
                             truth=TRUTH_KEY, n_domains=int(n_domains)))
        first = slices[0][0]
    else:
        if image:
            raise InputError(f"format={format!r} writes no image; use image=False")
        params = _slices_params(n_slices, n_spots, n_domains, n_genes, batch_effect=batch_effect, seed=random_state,
                                pattern=pattern, **_format_kwargs(format, kwargs))
        for p in params:
            folder, truth = _write_format(p, out / p["slice_id"], format)
            rows.append(dict(sample=p["slice_id"], group=group, data=folder.name, image="",
                             platform=FORMAT_PLATFORM[format], truth=truth.name, n_domains=int(n_domains)))
        first = _programme_view(params[0])
    sheet = write_csv_atomic(pd.DataFrame(rows), out / "samplesheet.csv", index=False)
    if gmt:
        from .analysis import write_gmt as _write_gmt

        _write_gmt(out / "genesets.gmt", *gene_sets(first, random_state=random_state))
    logg.info("    finished", time=start, deep=f"wrote {sheet}")
    return sheet


def _programme_view(p: dict[str, Any]):
    """An AnnData without observations holding the programme's ``var`` and markers (for :func:`gene_sets`)."""
    import anndata as ad

    prog = _build_programme(p)
    view = ad.AnnData(var=prog.var.copy())
    view.uns[MARKERS_KEY] = {k: list(v) for k, v in prog.markers.items()}
    return view
