"""Clustering and integration metrics (spec PART C), array-level functions plus :func:`evaluate`.

Every metric takes arrays (an embedding ``(N, d)`` and label vectors of length ``N``) and returns a float.
Memory is O(N k): neighbourhoods come from :class:`sklearn.neighbors.NearestNeighbors`, and the only
quadratic object is sklearn's silhouette, which runs on a seeded subsample of at most ``max_n`` spots.

Direction of each score: higher is better for ARI, NMI, CA, F1, silhouette, iLISI, kBET, graph
connectivity, silhouette batch, PCR comparison and LTARI; lower is better for Davies-Bouldin and BatchKL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components
from scipy.stats import chi2
from sklearn import metrics as skm
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from . import _logging as logg
from ._constants import SLICE_KEY, TRUTH_KEY
from ._compat import renamed_kwarg
from ._utils import InputError

__all__ = [
    "ari",
    "nmi",
    "match_labels",
    "cluster_mapping",
    "clustering_accuracy",
    "f1_scores",
    "silhouette",
    "davies_bouldin",
    "subsample_index",
    "DEFAULT_MAX_N",
    "DEFAULT_MAX_N_BATCH",
    "batch_kl",
    "lisi",
    "ilisi",
    "kbet",
    "graph_connectivity",
    "pcr",
    "pcr_comparison",
    "silhouette_batch",
    "ltari",
    "evaluate",
]

DEFAULT_MAX_N = 10_000  #: largest number of spots a silhouette is computed on (seeded subsample above)
#: largest number of spots the batch metrics of :func:`evaluate` (iLISI, kBET, graph connectivity, PCR
#: comparison) run on: above it, one seeded uniform subsample; their kNN searches then cost the same at 1M
DEFAULT_MAX_N_BATCH = 50_000


# --- helpers -------------------------------------------------------------------------------------


def _codes(labels: Any, name: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (0..L-1, in sorted label order) and the distinct labels; missing labels raise."""
    values = pd.Series(np.asarray(labels).reshape(-1) if not isinstance(labels, pd.Series) else labels)
    if values.isna().any():
        raise InputError(f"{name}: {int(values.isna().sum())} missing label(s); drop unlabelled spots first")
    codes, uniques = pd.factorize(values.astype(str), sort=True)
    return codes.astype(np.int64), np.asarray(uniques)


def _embedding(X: Any, name: str = "embedding") -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise InputError(f"{name}: expected a 2-D array (spots x dims), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise InputError(f"{name}: contains NaN or infinite values")
    return X


def _check_lengths(n: int, **vectors: np.ndarray) -> None:
    for key, vec in vectors.items():
        if len(vec) != n:
            raise InputError(f"{key}: length {len(vec)} does not match the {n} spots")


@renamed_kwarg("seed", "random_state")
def subsample_index(n: int, max_n: int | None, random_state: int = 0) -> np.ndarray:
    """Sorted indices of a uniform random subsample of ``min(n, max_n)`` spots.

    Parameters
    ----------
    n
        Number of spots.
    max_n
        Largest subsample; ``None`` keeps every spot.
    random_state
        Seed of :func:`numpy.random.default_rng`; the same ``(n, max_n, random_state)`` gives the same
        subsample.

    Returns
    -------
    Indices into ``range(n)``, ascending. Uniform (not stratified) sampling keeps the mean of a per-spot
    score unbiased.
    """
    if max_n is None or n <= max_n:
        return np.arange(n)
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n, size=int(max_n), replace=False))


def _knn_indices(X: np.ndarray, k: int, query: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``k`` nearest neighbours (the query point itself included, at distance 0) of every query row."""
    k = min(k, X.shape[0])
    nn = NearestNeighbors(n_neighbors=k).fit(X)
    dist, idx = nn.kneighbors(X if query is None else query)
    return dist, idx


# --- label agreement -----------------------------------------------------------------------------


def ari(truth: Any, pred: Any) -> float:
    """Adjusted Rand index between two labellings (sklearn ``adjusted_rand_score``)."""
    t, _ = _codes(truth, "truth")
    p, _ = _codes(pred, "pred")
    _check_lengths(len(t), pred=p)
    return float(skm.adjusted_rand_score(t, p))


def nmi(truth: Any, pred: Any) -> float:
    """Normalised mutual information, arithmetic-mean normalisation (sklearn default)."""
    t, _ = _codes(truth, "truth")
    p, _ = _codes(pred, "pred")
    _check_lengths(len(t), pred=p)
    return float(skm.normalized_mutual_info_score(t, p))


def cluster_mapping(ref: np.ndarray, other: np.ndarray, n_ref: int | None = None, n_other: int | None = None, *,
                    require_overlap: bool = False) -> np.ndarray:
    """Hungarian assignment of the clusters of ``other`` to the classes of ``ref`` (integer codes).

    Parameters
    ----------
    ref, other
        Integer codes ``0..`` of the same spots.
    n_ref, n_other
        Numbers of classes and clusters (default: the largest code + 1).
    require_overlap
        Leave a cluster unmatched when its assigned class shares no spot with it.

    Returns
    -------
    ``mapping`` (int64, length ``n_other``): ``mapping[c]`` is the class of cluster ``c`` that maximises
    the total overlap; clusters left over (more clusters than classes) get ``n_ref, n_ref + 1, ...`` in
    decreasing cluster size. The contingency table is ``n_other x n_ref``, never spots x anything.
    """
    n_ref = int(ref.max()) + 1 if n_ref is None else int(n_ref)
    n_other = int(other.max()) + 1 if n_other is None else int(n_other)
    cont = sparse.coo_matrix((np.ones(len(ref)), (other, ref)), shape=(n_other, n_ref)).toarray()
    rows, cols = linear_sum_assignment(cont, maximize=True)
    mapping = np.full(n_other, -1, dtype=np.int64)
    for r, c in zip(rows, cols):
        if cont[r, c] > 0 or not require_overlap:
            mapping[r] = c
    left = [c for c in np.argsort(-cont.sum(1), kind="stable") if mapping[c] < 0]
    mapping[left] = n_ref + np.arange(len(left))
    return mapping


def match_labels(truth: Any, pred: Any) -> np.ndarray:
    """Map each predicted cluster to a true class by the Hungarian assignment that maximises agreement.

    Parameters
    ----------
    truth, pred
        Label vectors of equal length, without missing values.

    Returns
    -------
    Integer codes of the mapped predictions, in the code space of ``truth`` (sorted distinct true labels
    ``0..L-1``). Predicted clusters left without a class (more clusters than classes) get distinct codes
    ``L, L+1, ...``, so they count as errors and as extra classes in macro-F1, as with a square padded
    contingency table.
    """
    t, _ = _codes(truth, "truth")
    p, _ = _codes(pred, "pred")
    _check_lengths(len(t), pred=p)
    return cluster_mapping(t, p)[p]


def clustering_accuracy(truth: Any, pred: Any) -> float:
    """Clustering accuracy (CA): fraction of spots whose Hungarian-mapped cluster equals the true class."""
    t, _ = _codes(truth, "truth")
    return float(np.mean(match_labels(truth, pred) == t))


def f1_scores(truth: Any, pred: Any) -> dict[str, float]:
    """Macro- and micro-averaged F1 of the Hungarian-mapped predictions.

    Returns
    -------
    ``{"f1_macro": ..., "f1_micro": ...}``. Micro-F1 equals CA for single-label data; macro-F1 averages
    over the true classes and any unmatched predicted clusters (those score 0).
    """
    t, _ = _codes(truth, "truth")
    mapped = match_labels(truth, pred)
    return {
        "f1_macro": float(skm.f1_score(t, mapped, average="macro", zero_division=0)),
        "f1_micro": float(skm.f1_score(t, mapped, average="micro", zero_division=0)),
    }


# --- cluster separation --------------------------------------------------------------------------


@renamed_kwarg("seed", "random_state")
def silhouette(X: Any, labels: Any, *, max_n: int | None = DEFAULT_MAX_N, random_state: int = 0) -> float:
    """Mean silhouette width (Euclidean) of ``labels`` in ``X``.

    Parameters
    ----------
    X
        Embedding ``(N, d)``.
    labels
        Cluster labels, length ``N``.
    max_n
        Above this many spots the score is computed on a uniform subsample of ``max_n`` spots drawn with
        ``random_state`` (:func:`subsample_index`); ``None`` uses every spot (O(N^2) time).
    random_state
        Seed of the subsample.

    Returns
    -------
    The mean silhouette in [-1, 1]; NaN when fewer than 2 clusters (or every spot its own cluster) are
    present in the (sub)sample. Singleton clusters contribute 0 (sklearn convention).
    """
    X = _embedding(X)
    codes, _ = _codes(labels)
    _check_lengths(X.shape[0], labels=codes)
    idx = subsample_index(X.shape[0], max_n, random_state)
    codes = codes[idx]
    n_labels = len(np.unique(codes))
    if n_labels < 2 or n_labels >= len(idx):
        return float("nan")
    return float(skm.silhouette_score(X[idx], codes, metric="euclidean"))


def davies_bouldin(X: Any, labels: Any) -> float:
    """Davies-Bouldin index (sklearn; lower is better); NaN with fewer than 2 clusters.

    It costs O(N K d), so it always runs on every spot (no subsample).
    """
    X = _embedding(X)
    codes, _ = _codes(labels)
    _check_lengths(X.shape[0], labels=codes)
    if len(np.unique(codes)) < 2:
        return float("nan")
    return float(skm.davies_bouldin_score(X, codes))


# --- batch mixing --------------------------------------------------------------------------------


@renamed_kwarg("seed", "random_state")
def batch_kl(
    X: Any,
    batches: Any,
    *,
    n_replicates: int = 200,
    n_cells: int = 100,
    n_neighbors: int | None = None,
    random_state: int = 1,
) -> float:
    """BatchKL: KL divergence (log2) of local batch composition from the global one; lower is better.

    Each of ``n_replicates`` replicates samples ``n_cells`` random spots (without replacement); each
    sampled spot's neighbourhood is its ``k = min(5 * n_batches, 100)`` nearest spots in ``X``, itself
    included. Per spot ``KL = sum_b p_b log2(p_b / q_b)`` with ``p`` the neighbourhood batch fractions and
    ``q`` the global ones; the score is the mean over spots, then over replicates.

    Parameters
    ----------
    X
        Embedding ``(N, d)``.
    batches
        Batch (slice) of each spot.
    n_replicates, n_cells
        Sampling design (STAIG's R function: 200 x 100).
    n_neighbors
        Neighbourhood size, self included; default ``min(5 * n_batches, 100)``.
    random_state
        Seed of the spot sampling (numpy; the R original used ``set.seed(1)``, so its draws differ).

    Returns
    -------
    0 for a perfectly mixed embedding; up to ``log2(1 / q_min)`` for fully separated batches; NaN with a
    single batch.
    """
    X = _embedding(X)
    b, _ = _codes(batches, "batches")
    _check_lengths(X.shape[0], batches=b)
    n, n_b = X.shape[0], int(b.max()) + 1
    if n_b < 2:
        return float("nan")
    k = min(5 * n_b, 100) if n_neighbors is None else int(n_neighbors)
    q = np.bincount(b, minlength=n_b) / n
    rng = np.random.default_rng(random_state)
    m = min(n_cells, n)
    draws = np.stack([rng.choice(n, size=m, replace=False) for _ in range(n_replicates)])
    # Each distinct sampled spot is queried once; replicates then average over their own rows.
    uniq, inverse = np.unique(draws, return_inverse=True)
    _, idx = _knn_indices(X, k, query=X[uniq])
    counts = np.zeros((len(uniq), n_b))
    np.add.at(counts, (np.repeat(np.arange(len(uniq)), idx.shape[1]), b[idx].ravel()), 1.0)
    p = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(p / q), 0.0)
    kl = terms.sum(axis=1)
    return float(kl[inverse.reshape(draws.shape)].mean(axis=1).mean())


def lisi(
    X: Any,
    labels: Any,
    *,
    perplexity: float = 30.0,
    n_neighbors: int | None = None,
    tol: float = 1e-5,
    max_iter: int = 50,
) -> np.ndarray:
    """Local inverse Simpson index of ``labels`` for every spot (Korsunsky et al. 2019).

    Parameters
    ----------
    X
        Embedding ``(N, d)``.
    labels
        Category of each spot (batch for iLISI).
    perplexity
        Effective neighbourhood size of the Gaussian kernel.
    n_neighbors
        Neighbours searched per spot, the spot itself excluded; default ``3 * perplexity`` (90).
    tol, max_iter
        Tolerance and iteration cap of the per-spot bandwidth search (entropy = log(perplexity)).

    Returns
    -------
    Per-spot LISI, from 1 (one category around the spot) to the number of categories. Equals
    ``harmonypy.compute_lisi`` on the same data (checked in the tests).
    """
    # harmonypy.compute_lisi (2.x, C++) gives the same values but searches neighbours by brute force:
    # 0.2 s at 2,000 spots, 29 s at 20,000 and minutes at 10^5. So the neighbours come from sklearn
    # here and the kernel calibration (a bisection on each spot's bandwidth) is vectorised over spots.
    X = _embedding(X)
    codes, _ = _codes(labels)
    _check_lengths(X.shape[0], labels=codes)
    n = X.shape[0]
    k = int(3 * perplexity) if n_neighbors is None else int(n_neighbors)
    k = min(k, n - 1)
    if k < 1:
        return np.ones(n)
    dist, idx = _knn_indices(X, k + 1)
    # drop the spot itself (normally column 0; with duplicated points it may sit elsewhere)
    is_self = idx == np.arange(n)[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    dist = dist[keep].reshape(n, k)
    idx = idx[keep].reshape(n, k)
    # Shifting distances by their row minimum leaves the normalised kernel and its entropy unchanged and
    # avoids exp() underflow for far-away neighbourhoods.
    d0 = dist - dist[:, :1]
    log_u = np.log(perplexity)

    def kernel(beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = np.exp(-d0 * beta[:, None])
        s = w.sum(axis=1)
        w /= s[:, None]
        return np.log(s) + beta * (d0 * w).sum(axis=1), w

    beta = np.ones(n)
    lo = np.full(n, -np.inf)
    hi = np.full(n, np.inf)
    H, P = kernel(beta)
    for _ in range(max_iter):
        diff = H - log_u
        active = np.abs(diff) >= tol
        if not active.any():
            break
        up = active & (diff > 0)  # entropy too high: narrow the kernel
        down = active & (diff <= 0)
        lo[up] = beta[up]
        beta[up] = np.where(np.isinf(hi[up]), beta[up] * 2, (beta[up] + hi[up]) / 2)
        hi[down] = beta[down]
        beta[down] = np.where(np.isinf(lo[down]), beta[down] / 2, (beta[down] + lo[down]) / 2)
        H_new, P_new = kernel(beta)
        H = np.where(active, H_new, H)
        P = np.where(active[:, None], P_new, P)
    n_cat = int(codes.max()) + 1
    mass = np.zeros((n, n_cat))
    np.add.at(mass, (np.repeat(np.arange(n), k), codes[idx].ravel()), P.ravel())
    return 1.0 / (mass**2).sum(axis=1)


def ilisi(X: Any, batches: Any, *, perplexity: float = 30.0, n_neighbors: int | None = None) -> float:
    """Integration LISI: median over spots of the batch LISI (:func:`lisi`).

    About 1 when batches do not mix, up to the number of batches when they mix evenly; higher is better.
    """
    return float(np.median(lisi(X, batches, perplexity=perplexity, n_neighbors=n_neighbors)))


def kbet(X: Any, batches: Any, labels: Any | None = None, *, alpha: float = 0.05) -> float:
    """kBET acceptance rate, scIB variant: ``1 - mean rejection rate`` over true labels; higher is better.

    Within each true label (all spots form one group when ``labels`` is None), every spot's neighbourhood
    (itself plus its ``k0 - 1`` nearest spots of the same label in ``X``) is tested with a chi-square
    test of its batch counts against the label's global batch frequencies (``df = #batches - 1``);
    ``k0 = clip(floor(mean batch size / 4), 10, 70)`` as in scIB. The rejection rate of a label is the
    fraction of spots with ``p < alpha``. Labels with fewer than 10 spots or one batch are skipped.

    Differences from scIB / R kBET: every spot is tested instead of averaging 100 random 10 % subsets
    (the same expectation, no seed), and the neighbourhoods come from an exact kNN within each label
    rather than from scIB's 50-NN graph with its diffusion fallback for small components.

    Returns
    -------
    Acceptance rate in [0, 1]; NaN when every label was skipped.
    """
    X = _embedding(X)
    b, _ = _codes(batches, "batches")
    _check_lengths(X.shape[0], batches=b)
    groups = np.zeros(len(b), dtype=np.int64) if labels is None else _codes(labels, "labels")[0]
    _check_lengths(X.shape[0], labels=groups)
    rejection = []
    for g in np.unique(groups):
        sel = np.flatnonzero(groups == g)
        bg = b[sel]
        present, bg = np.unique(bg, return_inverse=True)
        n_b = len(present)
        if len(sel) < 10 or n_b < 2:
            continue
        sizes = np.bincount(bg, minlength=n_b)
        k0 = int(np.clip(np.floor(sizes.mean() / 4), 10, 70))
        k0 = min(k0, len(sel))
        _, idx = _knn_indices(X[sel], k0)
        counts = np.zeros((len(sel), n_b))
        np.add.at(counts, (np.repeat(np.arange(len(sel)), idx.shape[1]), bg[idx].ravel()), 1.0)
        expected = idx.shape[1] * sizes / sizes.sum()
        stat = ((counts - expected) ** 2 / expected).sum(axis=1)
        p_values = chi2.sf(stat, df=n_b - 1)
        rejection.append(float(np.mean(p_values < alpha)))
    if not rejection:
        return float("nan")
    return 1.0 - float(np.mean(rejection))


def graph_connectivity(X: Any, labels: Any, *, n_neighbors: int = 15) -> float:
    """scIB graph connectivity: mean over true labels of the largest connected share of the label.

    A kNN graph (``n_neighbors``, undirected) is built on the embedding; for each label, the subgraph on
    its spots is split into connected components and the size of the largest is divided by the label's
    spot count.

    Returns
    -------
    A score in (0, 1]; 1 when every label forms one connected piece.
    """
    X = _embedding(X)
    codes, _ = _codes(labels)
    _check_lengths(X.shape[0], labels=codes)
    n = X.shape[0]
    _, idx = _knn_indices(X, n_neighbors + 1)
    rows = np.repeat(np.arange(n), idx.shape[1])
    graph = sparse.csr_matrix((np.ones(rows.size, dtype=np.int8), (rows, idx.ravel())), shape=(n, n))
    scores = []
    for g in np.unique(codes):
        sel = np.flatnonzero(codes == g)
        _, comp = connected_components(graph[sel][:, sel], directed=True, connection="weak")
        scores.append(np.bincount(comp).max() / len(sel))
    return float(np.mean(scores))


@renamed_kwarg("seed", "random_state")
def pcr(X: Any, batches: Any, *, n_comps: int = 50, random_state: int = 0) -> float:
    """Variance contribution of the batch in ``X`` by principal component regression (scIB ``pcr``).

    ``sum_k Var_k * R^2(PC_k ~ batch) / sum_k Var_k`` over the top ``n_comps`` PCs (fewer when ``X`` has
    fewer dimensions). ``X`` may be dense or scipy sparse (PCA with implicit centring).

    Returns
    -------
    A share in [0, 1]; NaN with a single batch.
    """
    b, _ = _codes(batches, "batches")
    n_b = int(b.max()) + 1
    if n_b < 2:
        return float("nan")
    if sparse.issparse(X):
        X = sparse.csr_matrix(X)
    else:
        X = np.asarray(X)  # no float64 copy of a large expression matrix
        if X.ndim != 2:
            raise InputError(f"X: expected a 2-D array (spots x features), got shape {X.shape}")
    _check_lengths(X.shape[0], batches=b)
    n_comps = min(n_comps, min(X.shape))
    # arpack needs n_comps < min(shape); a full SVD is only used for small dense inputs
    solver = "full" if n_comps == min(X.shape) and not sparse.issparse(X) else "arpack"
    if solver == "arpack":
        n_comps = min(n_comps, min(X.shape) - 1)
    pca = PCA(n_components=n_comps, svd_solver=solver, random_state=random_state)  # sparse: implicit centring
    pcs = pca.fit_transform(X).astype(np.float64)
    var = pca.explained_variance_
    # R^2 of a least-squares fit of each PC on the one-hot batch (with intercept) has a closed form:
    # between-batch sum of squares / total sum of squares; no regression object is needed.
    sizes = np.bincount(b, minlength=n_b).astype(np.float64)
    means = np.zeros((n_b, pcs.shape[1]))
    np.add.at(means, b, pcs)
    means /= sizes[:, None]
    centred = pcs - pcs.mean(axis=0)
    ss_total = (centred**2).sum(axis=0)
    ss_between = (sizes[:, None] * (means - pcs.mean(axis=0)) ** 2).sum(axis=0)
    r2 = np.divide(ss_between, ss_total, out=np.zeros_like(ss_total), where=ss_total > 0)
    return float((r2 * var).sum() / var.sum())


@renamed_kwarg("seed", "random_state")
def pcr_comparison(X_before: Any, X_after: Any, batches: Any, *, n_comps: int = 50, random_state: int = 0) -> float:
    """scIB PCR comparison: relative drop of the batch variance contribution, ``(before - after) / before``.

    Parameters
    ----------
    X_before
        Unintegrated features (``adata.X``), dense or sparse.
    X_after
        Integrated embedding.
    batches
        Batch of each spot.

    Returns
    -------
    Score in [0, 1] (negative values floored at 0); NaN with a single batch or no batch variance before.
    """
    before = pcr(X_before, batches, n_comps=n_comps, random_state=random_state)
    after = pcr(X_after, batches, n_comps=n_comps, random_state=random_state)
    if not np.isfinite(before) or before <= 0:
        return float("nan")
    return float(max((before - after) / before, 0.0))


@renamed_kwarg("seed", "random_state")
def silhouette_batch(
    X: Any, batches: Any, labels: Any, *, max_n: int | None = DEFAULT_MAX_N, random_state: int = 0
) -> float:
    """scIB batch silhouette: within each true label, ``1 - |s|`` of the batch silhouette; higher = mixed.

    Per label, the per-spot silhouette of the batch labels is computed (on a uniform subsample of at most
    ``max_n`` spots of that label, drawn with ``random_state``), mapped to ``1 - |s|`` and averaged; the score is
    the mean over labels. Labels with a single batch, or with as many batches as spots, are skipped.

    Returns
    -------
    Score in [0, 1]; NaN when every label was skipped.
    """
    X = _embedding(X)
    b, _ = _codes(batches, "batches")
    codes, _ = _codes(labels, "labels")
    _check_lengths(X.shape[0], batches=b, labels=codes)
    per_label = []
    for g in np.unique(codes):
        sel = np.flatnonzero(codes == g)
        sel = sel[subsample_index(len(sel), max_n, random_state)]
        n_b = len(np.unique(b[sel]))
        if n_b < 2 or n_b >= len(sel):
            continue
        s = skm.silhouette_samples(X[sel], b[sel], metric="euclidean")
        per_label.append(float(np.mean(1.0 - np.abs(s))))
    return float(np.mean(per_label)) if per_label else float("nan")


def ltari(query_truth: Any, reference_labels: Any, matches: Any) -> float:
    """Label-transfer ARI: ARI of the query's true labels vs the labels of their matched reference spots.

    Parameters
    ----------
    query_truth
        True label of each query spot (length ``N_q``).
    reference_labels
        True label of each reference spot (length ``N_r``).
    matches
        Index of the matched reference spot for every query spot (length ``N_q``, values in ``0..N_r-1``),
        e.g. the best match of an embedding-based spatial match.

    Returns
    -------
    ARI over the query spots whose own label and whose match's label are both known.
    """
    q = pd.Series(np.asarray(query_truth).reshape(-1))
    r = pd.Series(np.asarray(reference_labels).reshape(-1))
    m = np.asarray(matches).reshape(-1)
    _check_lengths(len(q), matches=m)
    if m.size and (not np.issubdtype(m.dtype, np.integer) or m.min() < 0 or m.max() >= len(r)):
        raise InputError(f"matches: expected integer indices in [0, {len(r)}) of the reference spots")
    transferred = r.iloc[m].reset_index(drop=True)
    keep = (q.notna() & transferred.notna()).to_numpy()
    if not keep.any():
        return float("nan")
    return ari(q[keep], transferred[keep])


# --- one call for an AnnData ---------------------------------------------------------------------


def _labelled_mask(truth: pd.Series) -> np.ndarray:
    return truth.notna().to_numpy()


@renamed_kwarg("seed", "random_state")
def evaluate(
    adata,
    *,
    embedding_key: str,
    domain_key: str,
    truth_key: str | None = TRUTH_KEY,
    batch_key: str | None = SLICE_KEY,
    max_n: int | None = DEFAULT_MAX_N,
    random_state: int = 0,
    max_n_batch: int | None = DEFAULT_MAX_N_BATCH,
) -> dict[str, Any]:
    """Every applicable metric of one embedding and its domains.

    Parameters
    ----------
    adata
        AnnData with ``obsm[embedding_key]`` and ``obs[domain_key]``; optionally ``obs[truth_key]``
        (NaN = unlabelled) and ``obs[batch_key]``; ``X`` is the "before" input of PCR comparison.
    embedding_key
        ``obsm`` key of the embedding.
    domain_key
        ``obs`` key of the predicted domains.
    truth_key
        ``obs`` key of the annotation; the label metrics are skipped when it is None, absent or all NaN.
    batch_key
        ``obs`` key of the slice; batch metrics run when it holds more than one slice (None: never).
    max_n, random_state
        Subsample size and seed of the silhouettes.
    max_n_batch
        Above this many spots the batch metrics (BatchKL, iLISI, PCR comparison; with truth kBET, graph
        connectivity, batch silhouette) run on one uniform subsample of ``max_n_batch`` spots (seed
        ``random_state``); ``None`` uses every spot. Label metrics (ARI, NMI, CA, F1) and Davies-Bouldin are
        linear and always use every spot.

    Returns
    -------
    A flat dict of floats/ints, plus ``per_slice`` (slice -> ``{"ari", "nmi", "n_labelled"}``) with several
    labelled slices. Keys: ``n_spots``, ``n_domains``, ``silhouette``, ``davies_bouldin``; with truth
    ``n_labelled``, ``n_unlabelled``, ``ari``, ``nmi``, ``ca``, ``f1_macro``, ``f1_micro``; with more than
    one slice ``n_slices``, ``batch_kl``, ``ilisi``, ``pcr_comparison``, and with truth too ``kbet``,
    ``graph_connectivity``, ``silhouette_batch``. Label and label-based batch metrics use labelled spots
    only; the rest use every spot (up to the subsamples above). When a subsample was used its size is
    recorded: ``silhouette_n_spots``, ``batch_metrics_n_spots``.
    """
    if embedding_key not in adata.obsm:
        raise InputError(f"obsm[{embedding_key!r}] not found; available: {sorted(adata.obsm.keys())}")
    if domain_key not in adata.obs:
        raise InputError(f"obs[{domain_key!r}] not found; run clustering first")
    start = logg.info(f"evaluating obsm[{embedding_key!r}] / obs[{domain_key!r}]")
    emb = _embedding(adata.obsm[embedding_key], f"obsm[{embedding_key!r}]")
    domains = adata.obs[domain_key]
    if domains.isna().any():
        raise InputError(f"obs[{domain_key!r}]: {int(domains.isna().sum())} spot(s) without a domain")
    out: dict[str, Any] = {"n_spots": int(adata.n_obs), "n_domains": int(domains.nunique())}
    out["silhouette"] = silhouette(emb, domains, max_n=max_n, random_state=random_state)
    if max_n is not None and adata.n_obs > max_n:
        out["silhouette_n_spots"] = int(max_n)
    out["davies_bouldin"] = davies_bouldin(emb, domains)

    has_truth = truth_key is not None and truth_key in adata.obs and adata.obs[truth_key].notna().any()
    if has_truth:
        truth = adata.obs[truth_key]
        lab = _labelled_mask(truth)
        t, d = truth[lab], domains[lab]
        out["n_labelled"] = int(lab.sum())
        out["n_unlabelled"] = int((~lab).sum())
        out["ari"] = ari(t, d)
        out["nmi"] = nmi(t, d)
        out["ca"] = clustering_accuracy(t, d)
        out.update(f1_scores(t, d))

    has_batches = batch_key is not None and batch_key in adata.obs and adata.obs[batch_key].nunique() > 1
    if has_batches:
        batches = adata.obs[batch_key]
        out["n_slices"] = int(batches.nunique())
        sub = subsample_index(adata.n_obs, max_n_batch, random_state)
        if len(sub) < adata.n_obs:
            out["batch_metrics_n_spots"] = int(len(sub))
        emb_s, batches_s = emb[sub], batches.iloc[sub]
        out["batch_kl"] = batch_kl(emb_s, batches_s)
        out["ilisi"] = ilisi(emb_s, batches_s)
        out["pcr_comparison"] = pcr_comparison(adata.X[sub], emb_s, batches_s) if adata.X is not None \
            else float("nan")
        if has_truth:
            sub_lab = sub[lab[sub]]
            t_s, bl_s = truth.iloc[sub_lab], batches.iloc[sub_lab]
            out["kbet"] = kbet(emb[sub_lab], bl_s, t_s)
            out["graph_connectivity"] = graph_connectivity(emb[sub_lab], t_s)
            out["silhouette_batch"] = silhouette_batch(emb[sub_lab], bl_s, t_s, max_n=max_n, random_state=random_state)
            bl = batches[lab]
            per_slice: dict[str, Mapping[str, float]] = {}
            for s in pd.unique(bl):
                m = (bl == s).to_numpy()
                per_slice[str(s)] = {
                    "ari": ari(t[m], d[m]),
                    "nmi": nmi(t[m], d[m]),
                    "n_labelled": int(m.sum()),
                }
            out["per_slice"] = per_slice
    logg.info("    finished", time=start, deep=", ".join(k for k in out if k != "per_slice"))
    return out
