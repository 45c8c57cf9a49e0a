"""Domains from an embedding: mclust EEE (R, via rpy2), tied GMM fallback, k-means, Leiden, refinement.

Array-level functions (:func:`mclust`, :func:`gmm_tied`, :func:`kmeans`, :func:`leiden`,
:func:`refine_labels`, :func:`choose_n_clusters`) take an embedding ``(N, d)`` and return integer labels
``0..K-1``; :func:`cluster` is the AnnData entry point (spec A9, B7, D3).

R is imported lazily, only when mclust runs, and numpy arrays cross into R only inside a
``localconverter`` block; the global ``numpy2ri`` activation is never used.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from . import _logging as logg
from ._compat import renamed_kwarg
from ._constants import SLICE_KEY, SPATIAL, UNS_KEY, domain_key
from ._utils import InputError, record
from .metrics import DEFAULT_MAX_N, silhouette, subsample_index

__all__ = [
    "mclust_available",
    "mclust",
    "gmm_tied",
    "kmeans",
    "leiden",
    "refine_labels",
    "choose_n_clusters",
    "resolve_algorithm",
    "cluster",
]

Algorithm = Literal["auto", "mclust", "gmm", "kmeans", "leiden", "mclust_cosine", "kmeans_cosine"]
#: Clustering algorithms of :func:`cluster` (``models.METHODS`` lists the embedding methods); ``*_cosine``:
#: the same clustering of the L2-normalised embedding (cosine geometry, which the contrastive losses shape)
ALGORITHMS: tuple[str, ...] = ("mclust", "gmm", "kmeans", "leiden", "mclust_cosine", "kmeans_cosine")
AUTO = "auto"  #: ``cluster(method="auto")``, the default: the clustering of the method that owns the embedding
COSINE_SUFFIX = "_cosine"
AUTO_FALLBACK = "mclust"  #: what ``"auto"`` runs on an embedding no registered method owns
DEFAULT_SEED = 2023  #: STAIG's R seed for mclust
DEFAULT_MAX_FIT = 20_000  #: above this many spots mclust is fitted on a subsample and predicts the rest
FALLBACK_BACKEND = "gmm_tied_fallback"

# R function, defined once per process. It returns the 1-based classification, NULL when Mclust finds
# no model, or the error message as a string (so that R errors do not print to the console).
_R_MCLUST_SRC = """
function(X, G, model, seed, fit_idx) {
  tryCatch({
    set.seed(seed)
    fit <- suppressWarnings(Mclust(X[fit_idx, , drop = FALSE], G = G, modelNames = model, verbose = FALSE))
    if (is.null(fit)) return(NULL)
    if (length(fit_idx) == nrow(X)) return(fit$classification)
    predict(fit, newdata = X)$classification
  }, error = function(e) conditionMessage(e))
}
"""
_r_mclust_fn = None


#: Variables rpy2 sets in ``os.environ`` when it starts R. LD_LIBRARY_PATH gains /usr/lib/x86_64-linux-gnu,
#: which makes every later subprocess (Nextflow, its tasks) load the system libpython instead of the one
#: its own interpreter was built with; R needs them only while it starts, so they are put back after.
_RPY2_ENV = ("LD_LIBRARY_PATH", "KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK")


def _robjects():
    """``rpy2.robjects``, imported without leaving R's loader settings in this process's environment."""
    import os
    import sys

    if "rpy2.robjects" in sys.modules:
        return sys.modules["rpy2.robjects"]
    saved = {key: os.environ.get(key) for key in _RPY2_ENV}
    try:
        import rpy2.robjects as ro
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return ro


@functools.lru_cache(maxsize=1)
def mclust_available() -> bool:
    """Whether rpy2 can start R and R has the ``mclust`` package (checked once per process)."""
    try:
        ro = _robjects()

        return bool(ro.r('isTRUE(requireNamespace("mclust", quietly = TRUE))')[0])
    except Exception as err:  # ImportError, R missing (R_HOME), broken shared library, ...
        logg.debug(f"rpy2/R/mclust not usable: {type(err).__name__}: {err}")
        return False


def _mclust_fn():
    """Attach mclust and define the R wrapper once (``mclust::Mclust`` alone fails on ``mclustBIC``)."""
    global _r_mclust_fn
    if _r_mclust_fn is None:
        ro = _robjects()

        ro.r("suppressPackageStartupMessages(library(mclust))")
        _r_mclust_fn = ro.r(_R_MCLUST_SRC)
    return _r_mclust_fn


def _check_embedding(embedding: Any, n_clusters: int | None = None, name: str = "embedding") -> np.ndarray:
    X = np.asarray(embedding, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise InputError(f"{name}: expected a non-empty 2-D array (spots x dims), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise InputError(f"{name}: contains NaN or infinite values")
    if n_clusters is not None and not 1 <= int(n_clusters) <= X.shape[0]:
        raise InputError(f"n_clusters={n_clusters} must be between 1 and the number of spots ({X.shape[0]})")
    return X


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive integer labels 0..m-1 in the order of the original label values."""
    return np.unique(labels, return_inverse=True)[1].reshape(-1).astype(np.int64)


@renamed_kwarg("seed", "random_state")
def mclust(
    embedding: Any,
    n_clusters: int,
    *,
    model: str = "EEE",
    random_state: int = DEFAULT_SEED,
    max_fit: int | None = DEFAULT_MAX_FIT,
) -> np.ndarray:
    """Gaussian mixture clustering with R ``mclust::Mclust`` (STAIG's clustering, spec A9).

    Parameters
    ----------
    embedding
        Embedding ``(N, d)``, used as is (no scaling or PCA).
    n_clusters
        Number of mixture components ``G``.
    model
        mclust covariance model; ``"EEE"`` = one full covariance shared by all components. With ``d = 1``
        a multivariate name is replaced by its univariate counterpart (``"EEE"`` -> ``"E"``).
    random_state
        R seed, set right before the fit (mclust draws a random subset for its hierarchical start).
    max_fit
        With more spots than this, the mixture is fitted on a uniform subsample of ``max_fit`` spots
        (numpy seed ``random_state``) and every spot is then classified with ``predict.Mclust`` (spec D3); this
        bounds the EM cost (about 45 s for 20,000 x 64 with G = 7). ``None`` fits on every spot.

    Returns
    -------
    Labels ``0..K-1`` (int64, length N).

    Raises
    ------
    RuntimeError
        When R, rpy2 or mclust is missing, when Mclust fails, or when it returns no model (NULL).
    """
    X = np.ascontiguousarray(_check_embedding(embedding, n_clusters), dtype=np.float64)
    if not mclust_available():
        raise RuntimeError(
            "mclust needs R with the 'mclust' package and rpy2 (Debian: apt-get install r-base-core "
            "r-cran-mclust); use method='gmm' otherwise"
        )
    from rpy2.robjects import default_converter, numpy2ri
    from rpy2.robjects.conversion import localconverter

    # Constant columns (e.g. ReLU units that never fire, as in Spotscape's non-negative embedding)
    # make every shared covariance singular, and mclust then finds no fit: drop them.
    spread = X.std(axis=0)
    keep = spread > 1e-8 * max(float(spread.max()), 1e-30)
    if not keep.all():
        logg.info(f"mclust: dropping {int((~keep).sum())} constant embedding dimension(s) of {X.shape[1]}")
        X = np.ascontiguousarray(X[:, keep])
    n, d = X.shape
    if d == 1 and len(model) == 3:
        logg.warning(f"mclust: 1-D embedding, using univariate model {model[0]!r} instead of {model!r}")
        model = model[0]
    if max_fit is not None and n > max_fit:
        rng = np.random.default_rng(random_state)
        fit_idx = np.sort(rng.choice(n, size=int(max_fit), replace=False))
        logg.info(f"mclust: fitting on {max_fit} of {n} spots, predicting the rest")
    else:
        fit_idx = np.arange(n)
    fn = _mclust_fn()
    with localconverter(default_converter + numpy2ri.converter):
        res = fn(X, int(n_clusters), model, int(random_state), (fit_idx + 1).astype(np.int32))
    if isinstance(res, np.ndarray) and res.dtype.kind in "iuf":
        labels = np.asarray(res).reshape(-1)
        if labels.shape[0] != n:
            raise RuntimeError(f"mclust returned {labels.shape[0]} labels for {n} spots")
        return _relabel(labels.astype(np.int64))
    if isinstance(res, np.ndarray) and res.dtype.kind in "US":
        raise RuntimeError(f"mclust (model {model}, G={n_clusters}) failed in R: {res[0]}")
    raise RuntimeError(
        f"mclust found no fit (model {model}, G={n_clusters}, {len(fit_idx)} spots x {d} dims): the "
        "embedding may be degenerate (too few distinct points or a singular covariance); try another "
        "n_clusters or method='gmm'"
    )


@renamed_kwarg("seed", "random_state")
def gmm_tied(embedding: Any, n_clusters: int, *, random_state: int = DEFAULT_SEED) -> np.ndarray:
    """Gaussian mixture with one shared full covariance (the EEE model), initialised from k-means.

    The Python stand-in for :func:`mclust` when R is unavailable; mclust starts EM from hierarchical
    clustering instead, so the labels can differ.

    Returns
    -------
    Labels ``0..K-1`` (int64).
    """
    from sklearn.mixture import GaussianMixture

    X = _check_embedding(embedding, n_clusters)
    gmm = GaussianMixture(
        n_components=int(n_clusters), covariance_type="tied", init_params="kmeans", random_state=random_state
    )
    return _relabel(gmm.fit_predict(X))


@renamed_kwarg("seed", "random_state")
def kmeans(
    embedding: Any,
    n_clusters: int,
    *,
    random_state: int = DEFAULT_SEED,
    n_init: int = 10,
    batch_size: int | None = None,
) -> np.ndarray:
    """k-means with ``n_init`` restarts (Spotscape's evaluation clustering, spec B7; STAIG's DS pseudo-labels).

    The one scikit-learn k-means of the package; :func:`spatialdomains.nn.kmeans_prototypes` is the
    on-device one used inside Spotscape's training steps.

    Parameters
    ----------
    embedding
        ``(N, d)`` array (computed in float64).
    n_clusters
        K.
    random_state
        Seed of the initialisation.
    n_init
        Restarts; the best inertia wins.
    batch_size
        Use ``MiniBatchKMeans`` with mini-batches of this size (for very many spots).

    Returns
    -------
    Labels ``0..K-1`` (int64).
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    X = _check_embedding(embedding, n_clusters)
    if batch_size:
        km = MiniBatchKMeans(n_clusters=int(n_clusters), n_init=n_init, random_state=random_state,
                             batch_size=int(batch_size))
    else:
        km = KMeans(n_clusters=int(n_clusters), n_init=n_init, random_state=random_state)
    return _relabel(km.fit_predict(X))


@renamed_kwarg("seed", "random_state")
def leiden(
    embedding: Any,
    resolution: float = 1.0,
    *,
    random_state: int = DEFAULT_SEED,
    n_neighbors: int = 15,
    neighbors_method: Literal["umap", "gauss"] = "umap",
) -> np.ndarray:
    """Leiden communities of the kNN graph of the embedding (scanpy, igraph backend).

    Parameters
    ----------
    embedding
        Embedding ``(N, d)``.
    resolution
        Leiden resolution; higher gives more communities.
    random_state
        Seed of the neighbour search and of Leiden.
    n_neighbors
        Neighbours per spot in the graph.
    neighbors_method
        Edge weights of ``scanpy.pp.neighbors``: ``"umap"`` (scanpy's default; its first call in a
        process compiles numba code, about 20 s) or ``"gauss"`` (Gaussian kernel, no compilation).

    Returns
    -------
    Labels ``0..K-1`` (int64); K follows from ``resolution``.
    """
    import anndata as ad
    import scanpy as sc

    X = _check_embedding(embedding)
    tmp = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(X.shape[0])]))
    tmp.obsm["X_emb"] = X
    sc.pp.neighbors(
        tmp,
        n_neighbors=min(n_neighbors, X.shape[0] - 1),
        use_rep="X_emb",
        method=neighbors_method,
        random_state=random_state,
    )
    sc.tl.leiden(
        tmp, resolution=resolution, flavor="igraph", n_iterations=2, directed=False, random_state=random_state
    )
    return _relabel(tmp.obs["leiden"].astype(int).to_numpy())


def refine_labels(
    labels: Any, coords: Any, *, n_neighbors: int = 15, slice_ids: Any | None = None
) -> np.ndarray:
    """Spatial majority-vote smoothing of domain labels (STAIG refinement, spec A9).

    Each spot takes the most frequent label among its ``n_neighbors`` nearest spots of the same slice
    (itself excluded, its own label does not vote); ties go to the label met first in nearest-first
    order. All new labels are computed from the old ones, and neighbours never cross slices.

    Parameters
    ----------
    labels
        Domain label of each spot (any hashable values).
    coords
        Spatial coordinates ``(N, 2)`` (or ``(N, 3)``).
    n_neighbors
        Voters per spot (fewer in a slice with at most ``n_neighbors`` spots).
    slice_ids
        Slice of each spot; ``None`` treats all spots as one slice.

    Returns
    -------
    Refined labels, same dtype and values as ``labels``.
    """
    lab = np.asarray(labels).reshape(-1)
    xy = np.asarray(coords, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[0] != lab.shape[0]:
        raise InputError(f"coords: expected shape ({lab.shape[0]}, 2), got {xy.shape}")
    if not np.isfinite(xy).all():
        raise InputError("coords: contain NaN or infinite values")
    codes, uniques = pd.factorize(pd.Series(lab), sort=False)
    if (codes < 0).any():
        raise InputError("labels: missing values; every spot needs a label before refinement")
    if slice_ids is None:
        slices = np.zeros(len(lab), dtype=np.int64)
    else:
        slices = pd.factorize(pd.Series(np.asarray(slice_ids).reshape(-1)))[0]
    if len(slices) != len(lab):
        raise InputError(f"slice_ids: length {len(slices)} does not match the {len(lab)} spots")
    new = codes.copy()
    for s in np.unique(slices):
        sel = np.flatnonzero(slices == s)
        k = min(int(n_neighbors), len(sel) - 1)
        if k < 1:
            continue
        _, idx = cKDTree(xy[sel]).query(xy[sel], k=k + 1)
        idx = idx.reshape(len(sel), k + 1)
        # drop the spot itself (column 0 unless points coincide; then wherever it is, else the last)
        is_self = idx == np.arange(len(sel))[:, None]
        is_self[~is_self.any(axis=1), -1] = True
        neigh = idx[~is_self].reshape(len(sel), k)
        new[sel] = _nearest_first_mode(codes[sel][neigh])
    return np.asarray(uniques)[new].astype(lab.dtype, copy=False)


def _nearest_first_mode(votes: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """Row-wise most frequent value of ``votes`` (n, k); ties go to the earliest column."""
    # Counting each column's value within its row is O(k^2) per row but needs no (n x n_labels) table,
    # so memory stays O(chunk * k^2) whatever the number of labels; argmax keeps the first maximum.
    out = np.empty(votes.shape[0], dtype=votes.dtype)
    for start in range(0, votes.shape[0], chunk):
        v = votes[start : start + chunk]
        counts = (v[:, :, None] == v[:, None, :]).sum(axis=2)
        out[start : start + chunk] = v[np.arange(v.shape[0]), counts.argmax(axis=1)]
    return out


_K_METHODS = {"mclust": mclust, "gmm": gmm_tied, "kmeans": kmeans}


def _select_k(
    X: np.ndarray, ks: list[int], fit: Callable[[np.ndarray, int], np.ndarray], random_state: int, max_n: int | None,
    max_fit: int | None = None,
) -> tuple[int, pd.DataFrame, np.ndarray | None, int]:
    """Fit every K in ``ks``; return the best K by silhouette, the score table, the best labels and the
    number of spots the search ran on.

    With more than ``max_fit`` spots every K is fitted (and scored) on one uniform subsample of
    ``max_fit`` spots, so the search costs the same at 20k and at 1M spots; the best labels are then
    ``None`` (they cover the subsample only) and the caller fits the chosen K on all spots.
    """
    idx = subsample_index(X.shape[0], max_fit, random_state)
    sub = X if len(idx) == X.shape[0] else X[idx]
    if len(idx) < X.shape[0]:
        logg.info(f"choosing K on {len(idx)} of {X.shape[0]} spots")
    rows, best_labels, best = [], None, (-np.inf, None)
    for k in ks:
        labels = fit(sub, k)
        score = silhouette(sub, labels, max_n=max_n, random_state=random_state)
        rows.append({"n_clusters": k, "silhouette": score})
        logg.debug(f"choose_n_clusters: K={k} silhouette={score:.4f}")
        if np.isfinite(score) and score > best[0]:
            best, best_labels = (score, k), labels
    table = pd.DataFrame(rows)
    if best[1] is None:
        raise InputError(f"choose_n_clusters: no K in {ks} gave a defined silhouette")
    return int(best[1]), table, (best_labels if len(idx) == X.shape[0] else None), len(idx)


@renamed_kwarg("seed", "random_state")
def choose_n_clusters(
    embedding: Any,
    k_range: Iterable[int] = range(5, 16),
    *,
    method: str = "kmeans",
    random_state: int = DEFAULT_SEED,
    max_n: int | None = DEFAULT_MAX_N,
    max_fit: int | None = DEFAULT_MAX_FIT,
) -> tuple[int, pd.DataFrame]:
    """Number of clusters with the highest mean silhouette (the paper's rule for unlabelled data).

    Parameters
    ----------
    embedding
        Embedding ``(N, d)``.
    k_range
        Candidate numbers of clusters.
    method
        Clustering run for each K: ``"mclust"``, ``"gmm"`` or ``"kmeans"``.
    random_state
        Seed of the clustering and of the silhouette subsample.
    max_n
        Silhouette subsample size (see :func:`spatialdomains.metrics.silhouette`).
    max_fit
        Above this many spots every K is fitted on one uniform subsample of ``max_fit`` spots (drawn
        with ``random_state``): bounded time and memory at any N. ``None`` fits every spot.

    Returns
    -------
    The best K (the smallest one on ties) and a table with columns ``n_clusters`` and ``silhouette``.
    """
    if method not in _K_METHODS:
        raise InputError(f"choose_n_clusters: method must be one of {sorted(_K_METHODS)}, got {method!r}")
    X = _check_embedding(embedding)
    ks = sorted({int(k) for k in k_range})
    if not ks or ks[0] < 2 or ks[-1] > X.shape[0] - 1:
        raise InputError(f"k_range {ks}: every K must lie in [2, {X.shape[0] - 1}]")
    k, table, _, _ = _select_k(X, ks, functools.partial(_K_METHODS[method], random_state=random_state),
                               random_state, max_n, max_fit)
    return k, table


def _name_from_rep(use_rep: str) -> str:
    return use_rep[2:] if use_rep.startswith("X_") else use_rep


def resolve_algorithm(method: str, use_rep: str) -> str:
    """The clustering ``method="auto"`` stands for on ``obsm[use_rep]``; any other method is returned as is.

    ``"auto"`` on ``X_<name>`` of a registered method is that method's ``MethodSpec.cluster_algorithm``
    (the clustering that measured best on its default embedding); on any other embedding it is
    :data:`AUTO_FALLBACK`.
    """
    if method != AUTO:
        return method
    from .models import METHODS as REGISTRY

    spec = REGISTRY.get(_name_from_rep(use_rep))
    return spec.cluster_algorithm if spec is not None else AUTO_FALLBACK


@renamed_kwarg("seed", "random_state")
def cluster(
    adata,
    n_clusters: int | None = None,
    *,
    use_rep: str = "X_staig",
    method: Algorithm = AUTO,
    refine: bool = False,
    refine_n_neighbors: int = 15,
    resolution: float = 1.0,
    key_added: str | None = None,
    k_range: tuple[int, int] | Iterable[int] = (5, 15),
    max_fit: int | None = DEFAULT_MAX_FIT,
    random_state: int = DEFAULT_SEED,
    copy: bool = False,
):
    """Spatial domains from an embedding in ``obsm[use_rep]``.

    Parameters
    ----------
    adata
        AnnData with ``obsm[use_rep]`` (and ``obsm['spatial']`` when ``refine``).
    n_clusters
        Number of domains; ``None`` picks it from ``k_range`` by the highest silhouette (one fit per
        candidate K, so slow with mclust on large data). Must be None for ``method="leiden"``.
    use_rep
        ``obsm`` key of the embedding.
    method
        ``"auto"`` (the default clustering of the method that owns ``use_rep``, see
        :func:`resolve_algorithm`), ``"mclust"`` (R mclust EEE; falls back to the tied GMM with a warning
        when R or mclust is missing), ``"gmm"`` (tied GMM), ``"kmeans"`` or ``"leiden"`` (uses
        ``resolution``); ``"mclust_cosine"`` / ``"kmeans_cosine"`` run mclust / k-means on the
        embedding with every row scaled to unit length.
    refine
        Apply :func:`refine_labels` (15-NN spatial majority vote within each ``obs['slice']``).
    refine_n_neighbors
        Voters per spot in the refinement.
    resolution
        Leiden resolution.
    key_added
        ``obs`` key of the labels; default ``domain_<name>`` for ``use_rep = 'X_<name>'``.
    k_range
        ``(low, high)`` inclusive bounds, or an iterable of candidate K, for the silhouette search.
    max_fit
        Subsample size above which mclust fits on a subsample (see :func:`mclust`); the GMM and k-means
        fit every candidate K of the silhouette search on one subsample of this size (then the chosen K
        on every spot), so that the search costs the same whatever the number of spots.
    random_state
        Seed of the clustering (the R seed for mclust).
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Writes
    ``obs[key_added]``: categorical of strings ``'0'``, ``'1'``, …;
    ``uns['spatialdomains']['cluster_<name>']``: the parameters (``method`` resolved, ``requested`` as
    given, ``l2_normalised``), ``backend`` (``mclust``,
    ``gmm_tied_fallback``, ``gmm``, ``kmeans``, ``leiden``), ``n_clusters``, ``k_selection``
    (``argument`` / ``silhouette`` / ``resolution``), ``silhouette_scores`` and ``k_selection_n_spots``
    (the spots the search ran on) when K was searched, and a
    ``warning`` when the fallback ran.
    """
    if method != AUTO and method not in ALGORITHMS:
        raise InputError(f"method must be one of {[AUTO, *ALGORITHMS]}, got {method!r}")
    requested, method = method, resolve_algorithm(method, use_rep)
    if use_rep not in adata.obsm:
        raise InputError(f"obsm[{use_rep!r}] not found; available: {sorted(adata.obsm.keys())}")
    if refine and SPATIAL not in adata.obsm:
        raise InputError(f"refine=True needs obsm[{SPATIAL!r}] (spot coordinates)")
    if method == "leiden" and n_clusters is not None:
        raise InputError("method='leiden' sets the number of domains by resolution; leave n_clusters=None")
    X = _check_embedding(adata.obsm[use_rep], n_clusters, name=f"obsm[{use_rep!r}]")
    resolved, cosine = method, method.endswith(COSINE_SUFFIX)
    if cosine:
        method = method[: -len(COSINE_SUFFIX)]
        X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    name = _name_from_rep(use_rep)
    key_added = key_added or domain_key(name)
    step = f"cluster_{key_added[len('domain_'):] if key_added.startswith('domain_') else key_added}"
    adata = adata.copy() if copy else adata
    start = logg.info(f"clustering obsm[{use_rep!r}] with {resolved}" + (" (auto)" if requested == AUTO else ""))

    backend, warning = method, None
    if method == "mclust" and not mclust_available():
        backend = FALLBACK_BACKEND
        warning = "R/rpy2/mclust unavailable: used a tied-covariance GMM (k-means init) instead of mclust EEE"
        logg.warning(warning)
    elif method == "mclust":
        backend = "mclust"
    fallbacks: list[str] = []
    if backend == "mclust":
        def fit(emb, k):
            try:
                return mclust(emb, k, random_state=random_state, max_fit=max_fit)
            except RuntimeError as err:
                if "no fit" not in str(err):
                    raise
                # A degenerate embedding for EEE at this K: keep the run going, and say so in uns.
                fallbacks.append(f"K={k}: {err}; used the tied-covariance GMM instead")
                logg.warning(fallbacks[-1])
                return gmm_tied(emb, k, random_state=random_state)
    elif backend in (FALLBACK_BACKEND, "gmm"):
        fit = functools.partial(gmm_tied, random_state=random_state)
    else:
        fit = functools.partial(kmeans, random_state=random_state)

    scores = k_selection_n = None
    if method == "leiden":
        labels = leiden(X, resolution, random_state=random_state)
        k_selection = "resolution"
    elif n_clusters is None:
        if isinstance(k_range, tuple) and len(k_range) == 2:
            ks = list(range(int(k_range[0]), int(k_range[1]) + 1))
        else:
            ks = sorted({int(k) for k in k_range})
        if not ks or ks[0] < 2 or ks[-1] > X.shape[0] - 1:
            raise InputError(f"k_range {ks}: every K must lie in [2, {X.shape[0] - 1}]")
        # mclust bounds each fit itself (EM on its max_fit subsample, then predict): the search keeps its
        # labels; the GMM and k-means fit every spot, so their search runs on a subsample
        n_clusters, table, labels, k_selection_n = _select_k(X, ks, fit, random_state, DEFAULT_MAX_N,
                                                             None if backend == "mclust" else max_fit)
        if backend == "mclust" and max_fit is not None:
            k_selection_n = min(k_selection_n, int(max_fit))
        scores = {int(r.n_clusters): float(r.silhouette) for r in table.itertuples()}
        k_selection = "silhouette"
        logg.info(f"    chose {n_clusters} domains by silhouette")
        if labels is None:  # K was chosen on a subsample: fit it on every spot
            labels = fit(X, int(n_clusters))
    else:
        labels = fit(X, int(n_clusters))
        k_selection = "argument"

    if refine:
        slice_ids = adata.obs[SLICE_KEY].to_numpy() if SLICE_KEY in adata.obs else None
        labels = refine_labels(
            labels, adata.obsm[SPATIAL], n_neighbors=refine_n_neighbors, slice_ids=slice_ids
        )
    if fallbacks:
        backend = FALLBACK_BACKEND
        warning = "; ".join(fallbacks)
    labels = _relabel(labels)
    n_found = int(labels.max()) + 1
    adata.obs[key_added] = pd.Categorical(labels.astype(str), categories=[str(i) for i in range(n_found)])
    record(
        adata,
        step,
        {
            "use_rep": use_rep,
            "method": resolved,
            "requested": requested,
            "l2_normalised": cosine,
            "backend": backend,
            "warning": warning,
            "n_clusters": None if n_clusters is None else int(n_clusters),
            "n_domains": n_found,
            "k_selection": k_selection,
            "silhouette_scores": scores,
            "k_selection_n_spots": k_selection_n,
            "resolution": resolution if method == "leiden" else None,
            "model": "EEE" if backend == "mclust" else None,
            "max_fit": max_fit if backend == "mclust" else None,
            "refine": refine,
            "refine_n_neighbors": refine_n_neighbors if refine else None,
            "key_added": key_added,
            "seed": random_state,  # the run's seed, as the training step records it
        },
    )
    logg.info("    finished", time=start, deep=f"added obs[{key_added!r}], uns[{UNS_KEY!r}][{step!r}]")
    return adata if copy else None


def __getattr__(name: str):
    if name == "METHODS":  # renamed in 0.2: ``models.METHODS`` is the list of embedding methods
        import warnings

        warnings.warn("spatialdomains.cluster.METHODS is deprecated; use cluster.ALGORITHMS", FutureWarning,
                      stacklevel=2)
        return ALGORITHMS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
