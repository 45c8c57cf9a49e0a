"""Sparse spatial graphs as int64 ``edge_index`` arrays of shape ``(2, E)``: never an N x N array.

Conventions (PyG): row 0 is the source, row 1 the target; graphs are symmetric, coalesced (sorted by
source then target, no duplicates) and have no self loops unless asked for. Several slices give a
block-diagonal graph: no edge ever joins two slices. AnnData stores the CSR form in
``obsp['spatial_connectivities']``; conversions live only in this module.

The NumPy conversions (:func:`coalesce`, :func:`symmetrize`, :func:`add_self_loops`, :func:`degree`,
:func:`to_csr`, :func:`from_csr`) give exactly what ``torch_geometric.utils`` gives
(``tests/unit/test_graph.py`` checks each against it); they stay NumPy because graphs are built in
``prepare``, which never loads torch (importing torch_geometric costs about 6 s of CPU per task).
The tensor-side helpers used in training (:func:`gcn_adjacency`) call ``torch_geometric.utils``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from . import _logging as logg
from ._constants import PLATFORM_GRAPH, SLICE_KEY, SPATIAL, SPATIAL_CONN, SPATIAL_NEIGHBORS
from ._utils import InputError, record

__all__ = [
    "knn_edges",
    "radius_edges",
    "hex_edges",
    "coalesce",
    "symmetrize",
    "remove_self_loops",
    "add_self_loops",
    "to_csr",
    "from_csr",
    "degree",
    "is_symmetric",
    "edge_index_from_adata",
    "adjacency_from_adata",
    "gcn_adjacency",
    "spatial_graph",
    "grid_spacing",
]


def coalesce(edge_index: np.ndarray, num_nodes: int) -> np.ndarray:
    """Sort edges by (source, target) and drop duplicates."""
    if edge_index.size == 0:
        return np.empty((2, 0), dtype=np.int64)
    key = np.unique(edge_index[0].astype(np.int64) * num_nodes + edge_index[1].astype(np.int64))
    return np.stack([key // num_nodes, key % num_nodes]).astype(np.int64)


def symmetrize(edge_index: np.ndarray, num_nodes: int) -> np.ndarray:
    """Union-symmetrise: keep (i, j) and (j, i) whenever either is present."""
    return coalesce(np.concatenate([edge_index, edge_index[::-1]], axis=1), num_nodes)


def remove_self_loops(edge_index: np.ndarray) -> np.ndarray:
    """Drop edges ``(i, i)``."""
    return edge_index[:, edge_index[0] != edge_index[1]]


def add_self_loops(edge_index: np.ndarray, num_nodes: int) -> np.ndarray:
    """Exactly one self loop per node, coalesced."""
    loops = np.tile(np.arange(num_nodes, dtype=np.int64), (2, 1))
    return coalesce(np.concatenate([remove_self_loops(edge_index), loops], axis=1), num_nodes)


def degree(edge_index: np.ndarray, num_nodes: int) -> np.ndarray:
    """Number of edges leaving each node."""
    return np.bincount(edge_index[0], minlength=num_nodes)


def to_csr(edge_index: np.ndarray, num_nodes: int, weights: np.ndarray | None = None) -> sp.csr_matrix:
    """Adjacency in CSR form (float32 ones unless ``weights`` are given)."""
    data = np.ones(edge_index.shape[1], dtype=np.float32) if weights is None else weights
    return sp.csr_matrix((data, (edge_index[0], edge_index[1])), shape=(num_nodes, num_nodes))


def from_csr(adj: sp.spmatrix) -> np.ndarray:
    """Coalesced ``edge_index`` of the stored entries of a sparse adjacency."""
    coo = sp.coo_matrix(adj)
    return coalesce(np.stack([coo.row, coo.col]).astype(np.int64), adj.shape[0])


def _check_coords(coords: np.ndarray) -> np.ndarray:
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] < 2:
        raise InputError(f"spatial coordinates must be an (N, 2) array, got shape {coords.shape}")
    if not np.isfinite(coords).all():
        bad = int(np.flatnonzero(~np.isfinite(coords).all(axis=1))[0])
        raise InputError(f"spatial coordinates hold NaN/inf (first at row {bad})")
    return coords


def _per_slice(coords: np.ndarray, slice_ids: np.ndarray | None, build) -> np.ndarray:
    """Run ``build(coords_of_slice) -> local edge_index`` per slice and offset into one graph."""
    n = coords.shape[0]
    if slice_ids is None:
        return build(coords)
    slice_ids = np.asarray(slice_ids)
    parts = []
    for value in _unique_in_order(slice_ids):
        idx = np.flatnonzero(slice_ids == value)
        local = build(coords[idx])
        parts.append(idx[local])
    if not parts:
        return np.empty((2, 0), dtype=np.int64)
    return coalesce(np.concatenate(parts, axis=1), n)


def _unique_in_order(values: np.ndarray) -> list:
    _, first = np.unique(values, return_index=True)
    return [values[i] for i in np.sort(first)]


def knn_edges(
    coords: np.ndarray,
    k: int,
    *,
    slice_ids: np.ndarray | None = None,
    self_loops: bool = False,
) -> np.ndarray:
    """Union-symmetrised k-nearest-neighbour graph (k neighbours besides the spot itself).

    Every node ends with degree >= k (within its slice, when that slice has more than k spots).
    """
    coords = _check_coords(coords)
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")

    def build(xy: np.ndarray) -> np.ndarray:
        m = xy.shape[0]
        kk = min(k, m - 1)
        if kk < 1:
            return np.empty((2, 0), dtype=np.int64)
        _, nbr = cKDTree(xy).query(xy, k=kk + 1, workers=-1)
        src = np.repeat(np.arange(m, dtype=np.int64), kk + 1)
        ei = np.stack([src, nbr.reshape(-1).astype(np.int64)])
        return symmetrize(remove_self_loops(ei), m)

    ei = _per_slice(coords, slice_ids, build)
    return add_self_loops(ei, coords.shape[0]) if self_loops else ei


def radius_edges(
    coords: np.ndarray,
    radius: float,
    *,
    slice_ids: np.ndarray | None = None,
    max_neighbors: int | None = None,
    self_loops: bool = False,
) -> np.ndarray:
    """All pairs closer than ``radius`` (optionally only the ``max_neighbors`` nearest), symmetric."""
    coords = _check_coords(coords)
    if radius <= 0:
        raise InputError(f"radius must be > 0, got {radius}")

    def build(xy: np.ndarray) -> np.ndarray:
        m = xy.shape[0]
        tree = cKDTree(xy)
        if max_neighbors is None:
            pairs = tree.query_pairs(radius, output_type="ndarray").astype(np.int64)
            ei = pairs.T if pairs.size else np.empty((2, 0), dtype=np.int64)
        else:
            kk = min(max_neighbors, m - 1)
            dist, nbr = tree.query(xy, k=kk + 1, distance_upper_bound=radius, workers=-1)
            src = np.repeat(np.arange(m, dtype=np.int64), kk + 1)
            keep = np.isfinite(dist.reshape(-1))
            ei = np.stack([src[keep], nbr.reshape(-1)[keep].astype(np.int64)])
        return symmetrize(remove_self_loops(ei), m)

    ei = _per_slice(coords, slice_ids, build)
    return add_self_loops(ei, coords.shape[0]) if self_loops else ei


def grid_spacing(coords: np.ndarray, sample: int = 20000, seed: int = 0) -> float:
    """Median nearest-neighbour distance (the spot pitch on a regular lattice)."""
    coords = _check_coords(coords)
    if coords.shape[0] < 2:
        raise InputError("need at least 2 spots to estimate the spot spacing")
    rng = np.random.default_rng(seed)
    idx = rng.choice(coords.shape[0], min(sample, coords.shape[0]), replace=False)
    dist, _ = cKDTree(coords).query(coords[idx], k=2, workers=-1)
    return float(np.median(dist[:, 1]))


def hex_edges(
    coords: np.ndarray, *, slice_ids: np.ndarray | None = None, rings: int = 1, self_loops: bool = False
) -> np.ndarray:
    """Visium lattice neighbours: every spot within ``rings`` hex rings (6 at ring 1, 18 up to ring 2).

    The radius comes from the measured spot pitch, so it works in any pixel scale. Spots at the tissue
    edge have fewer neighbours; isolated spots none.
    """
    coords = _check_coords(coords)
    if slice_ids is None:
        spacing = grid_spacing(coords)
        return radius_edges(coords, spacing * (rings + 0.2) if rings == 1 else spacing * 2.05, self_loops=self_loops)
    parts = []
    slice_ids = np.asarray(slice_ids)
    n = coords.shape[0]
    for value in _unique_in_order(slice_ids):
        idx = np.flatnonzero(slice_ids == value)
        if idx.size < 2:
            continue
        local = hex_edges(coords[idx], rings=rings)
        parts.append(idx[local])
    ei = coalesce(np.concatenate(parts, axis=1), n) if parts else np.empty((2, 0), dtype=np.int64)
    return add_self_loops(ei, n) if self_loops else ei


def is_symmetric(edge_index: np.ndarray, num_nodes: int) -> bool:
    """Whether every edge ``(i, j)`` has its reverse ``(j, i)`` (duplicates ignored)."""
    edge_index = np.asarray(edge_index, dtype=np.int64)
    if edge_index.size == 0:
        return True
    return np.array_equal(np.sort(edge_index[0] * num_nodes + edge_index[1]),
                          np.sort(edge_index[1] * num_nodes + edge_index[0]))


def edge_index_from_adata(adata, key: str = SPATIAL_CONN) -> np.ndarray:
    """The spatial graph stored in ``obsp[key]`` as an ``edge_index``."""
    if key not in adata.obsp:
        raise InputError(f"no spatial graph in obsp['{key}']; run spatialdomains.graph.spatial_graph first")
    return from_csr(adata.obsp[key])


def adjacency_from_adata(adata, key: str = SPATIAL_CONN) -> sp.csr_matrix:
    """The stored graph as a binary float32 CSR without self loops, indices sorted (the training view).

    Raises
    ------
    InputError
        When ``obsp[key]`` is missing.
    """
    if key not in adata.obsp:
        raise InputError(f"obsp['{key}'] is missing: run spatialdomains.pp.prepare_group (or "
                         "graph.spatial_graph) before training")
    a = sp.csr_matrix(adata.obsp[key]).tolil()
    a.setdiag(0)
    a = a.tocsr()
    a.eliminate_zeros()
    a.data[:] = 1.0
    a.sort_indices()
    return a


def gcn_adjacency(edge_index, num_nodes: int, *, dtype=None):
    r"""GCN propagation matrix :math:`\tilde D^{-1/2}(A + I)\tilde D^{-1/2}` as a torch sparse CSR tensor.

    ``edge_index`` (a ``(2, E)`` tensor or array) must be symmetric; duplicates and existing self
    loops are merged (binary A). ``torch_geometric.utils.coalesce``, then PyG's ``gcn_norm``, then
    ``to_torch_csr_tensor``: the matrix every ``GCNConv`` would build, made once per view.
    """
    import warnings

    import torch
    from torch_geometric.nn.conv.gcn_conv import gcn_norm
    from torch_geometric.utils import coalesce as pyg_coalesce, to_torch_csr_tensor

    edge_index = torch.as_tensor(edge_index, dtype=torch.long)
    dtype = dtype or torch.get_default_dtype()
    ei, weight = gcn_norm(pyg_coalesce(edge_index, num_nodes=num_nodes), None, num_nodes, add_self_loops=True,
                          dtype=dtype)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return to_torch_csr_tensor(ei, weight, (num_nodes, num_nodes))


def spatial_graph(
    adata,
    kind: str | None = None,
    *,
    k: int | None = None,
    radius: float | None = None,
    platform: str = "other",
    slice_key: str = SLICE_KEY,
    key_added: str = SPATIAL_CONN,
    copy: bool = False,
):
    """Build the sparse spatial graph of ``adata`` (block-diagonal over ``obs[slice_key]``).

    Parameters
    ----------
    adata
        AnnData with ``obsm['spatial']``.
    kind
        ``"hex"`` (Visium lattice ring), ``"knn"`` or ``"radius"``; default from ``platform``.
    k
        Neighbours for ``knn``.
    radius
        Distance cut-off for ``radius`` (same units as ``obsm['spatial']``).
    platform
        Sets the defaults (see ``PLATFORM_GRAPH``).

    Returns
    -------
    ``None`` (or a copy with ``copy=True``). Writes ``obsp[key_added]`` (CSR float32 adjacency) and
    ``uns['spatial_neighbors']`` (parameters, mean degree).
    """
    adata = adata.copy() if copy else adata
    if SPATIAL not in adata.obsm:
        raise InputError("obsm['spatial'] is missing: the spatial graph needs spot coordinates")
    defaults = PLATFORM_GRAPH.get(platform, PLATFORM_GRAPH["other"])
    kind = kind or defaults["kind"]
    k = k or defaults.get("k", 6)
    coords = np.asarray(adata.obsm[SPATIAL])[:, :2]
    slices = adata.obs[slice_key].to_numpy() if slice_key in adata.obs else None
    start = logg.info(f"building {kind} spatial graph on {adata.n_obs} spots")
    if kind == "knn":
        ei = knn_edges(coords, k, slice_ids=slices)
    elif kind == "radius":
        if radius is None:
            raise InputError("kind='radius' needs a radius")
        ei = radius_edges(coords, radius, slice_ids=slices)
    elif kind == "hex":
        ei = hex_edges(coords, slice_ids=slices)
    else:
        raise InputError(f"unknown graph kind {kind!r}; use hex, knn or radius")
    adata.obsp[key_added] = to_csr(ei, adata.n_obs)
    mean_degree = float(ei.shape[1] / max(adata.n_obs, 1))
    params = {"kind": kind, "k": k if kind == "knn" else None, "radius": radius, "platform": platform}
    adata.uns[SPATIAL_NEIGHBORS] = {**{p: v for p, v in params.items() if v is not None},
                                    "connectivities_key": key_added, "mean_degree": mean_degree,
                                    "n_edges": int(ei.shape[1])}
    record(adata, "spatial_graph", params)
    logg.info(f"    finished: {ei.shape[1]} directed edges, mean degree {mean_degree:.2f}", time=start,
              deep=f"added obsp['{key_added}'], uns['{SPATIAL_NEIGHBORS}']")
    return adata if copy else None
