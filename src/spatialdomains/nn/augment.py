"""Graph augmentations of both methods: stateless, seeded by torch's global generator, and no-ops
with ``training=False`` (as PyG's ``torch_geometric.utils.dropout_edge`` / ``mask_feature``).

* feature masking (STAIG spec A5, Spotscape B4): :func:`feature_mask`, PyG's ``mask_feature``;
* uniform edge dropout (Spotscape): :func:`drop_edges`, PyG's ``dropout_edge``;
* per-edge drop probabilities (STAIG spec A4): :func:`image_edge_probabilities`,
  :func:`gene_edge_probabilities`, :func:`fixed_edge_probabilities`, and symmetric views drawn from
  them by :func:`sample_view` over :func:`undirected_pairs` (or, as keep-masks over another edge order
  for mini-batches, :class:`PairKeeps`). PyG's ``dropout_edge`` has one rate for every edge, so these
  stay here.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor
from torch_geometric.utils import dropout_edge, mask_feature

__all__ = ["feature_mask", "drop_edges", "image_edge_probabilities", "gene_edge_probabilities",
           "fixed_edge_probabilities", "undirected_pairs", "sample_view", "PairKeeps"]


def feature_mask(num_features: int, p: float, *, device=None, training: bool = True) -> Tensor:
    """``(G,)`` float keep-mask zeroing each feature column independently with probability ``p``.

    The same columns are masked for every spot (PyG ``mask_feature(..., mode="col")``, drawn on
    ``device``). ``X diag(m) W^T = X (W diag(m))^T``, so callers apply it to the weight columns of the
    first layer instead of copying X.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"feature_mask: p must be in [0, 1), got {p}")
    _, mask = mask_feature(torch.ones(1, num_features, device=device), p, mode="col", training=training)
    return mask.reshape(-1).to(torch.get_default_dtype())


def drop_edges(edge_index: Tensor, p: float, *, training: bool = True) -> tuple[Tensor, Tensor]:
    """Directed edge dropout (PyG ``dropout_edge``, not forced undirected); returns ``(edge_index, kept mask)``."""
    return dropout_edge(edge_index, p=p, force_undirected=False, training=training)


def _row_normalise(values: np.ndarray, src: np.ndarray, num_nodes: int) -> np.ndarray:
    rowsum = np.bincount(src, weights=values, minlength=num_nodes)
    denom = rowsum[src]
    out = np.zeros_like(values, dtype=np.float64)
    ok = denom > 0
    out[ok] = values[ok] / denom[ok]
    return out


def per_edge(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], feats: np.ndarray, src: np.ndarray,
             dst: np.ndarray, *, chunk_bytes: int = 64 * 2**20) -> np.ndarray:
    """``fn(feats[src], feats[dst])`` (one value per edge) over chunks of edges.

    Gathering both endpoints of every edge at once costs E x d x 8 bytes twice: 10 GB for 1M cells with
    ~10 neighbours and 64 PCs. Each chunk holds at most ``chunk_bytes`` per side; values equal the
    unchunked ones (row-wise functions only).
    """
    out = np.empty(len(src), dtype=np.float64)
    step = max(1, chunk_bytes // (feats.itemsize * max(1, feats.shape[1])))
    for start in range(0, len(src), step):
        end = start + step
        out[start:end] = fn(feats[src[start:end]], feats[dst[start:end]])
    return out


def image_edge_probabilities(edge_index: np.ndarray, image_features: np.ndarray) -> np.ndarray:
    """Drop probability per directed edge from image-feature distances (spec A4.1).

    ``P_e = d_e / sum_{k in N(i)} d_ik`` with ``d_e`` the Euclidean distance between the image
    features of the edge's endpoints, normalised over the source node's neighbours. Rows sum to 1;
    edges whose endpoints have identical features (``d = 0``) get ``P = 0`` and are never dropped.

    Parameters
    ----------
    edge_index
        ``(2, E)`` int64 directed edges (source, target).
    image_features
        ``(N, q)`` per-spot image features.

    Returns
    -------
    ``(E,)`` float64 probabilities.
    """
    edge_index = np.asarray(edge_index, dtype=np.int64)
    feats = np.asarray(image_features, dtype=np.float64)
    src, dst = edge_index
    dist = per_edge(lambda a, b: np.linalg.norm(a - b, axis=1), feats, src, dst)
    return _row_normalise(dist, src, feats.shape[0])


def _gene_pcs(x: np.ndarray, n_pcs: int, random_state: int = 42) -> np.ndarray:
    from sklearn.decomposition import PCA

    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(0)
    sd = x.std(0)
    sd[sd == 0] = 1.0
    # one N x G copy (500k bins x 3000 genes: 6 GB each): z standardised in place and centred in place by
    # PCA (copy=False); bitwise the plain forms' values. 100k x 3000: 2.2 GB above X instead of 2.7.
    z = x - mean
    z /= sd
    n_pcs = int(min(n_pcs, z.shape[0] - 1, z.shape[1]))
    if n_pcs < 1:
        return z
    solver = "randomized" if max(z.shape) > 500 else "full"
    return PCA(n_components=n_pcs, random_state=random_state, svd_solver=solver, copy=False).fit_transform(z)


def gene_edge_probabilities(edge_index: np.ndarray, x: np.ndarray, *, n_pcs: int = 64, random_state: int = 42,
                            pcs: np.ndarray | None = None) -> np.ndarray:
    """Drop probability per directed edge from expression (spec A4.2, no image).

    Features are standardised per gene and reduced to ``n_pcs`` principal components (PCA with
    ``random_state``); ``W_e = 1 - cos(pc_i, pc_j)``; ``P_e`` = softmax of ``W`` over the source node's
    neighbours (close to ``1/deg``, tilted towards dissimilar neighbours). Pass ``pcs`` to reuse
    components.
    """
    edge_index = np.asarray(edge_index, dtype=np.int64)
    if pcs is None:
        pcs = _gene_pcs(x, n_pcs, random_state)
    pcs = np.asarray(pcs, dtype=np.float64)
    norm = np.linalg.norm(pcs, axis=1, keepdims=True)
    unit = pcs / np.where(norm > 0, norm, 1.0)
    src, dst = edge_index
    w = 1.0 - per_edge(lambda a, b: np.einsum("ij,ij->i", a, b), unit, src, dst)
    # softmax over each source's neighbours (W lies in [0, 2], so exp cannot overflow)
    return _row_normalise(np.exp(w), src, pcs.shape[0])


def fixed_edge_probabilities(edge_index: np.ndarray, p: float) -> np.ndarray:
    """The same drop probability ``p`` for every edge (spec A4.3, the paper's no-image default)."""
    return np.full(np.asarray(edge_index).shape[1], float(p), dtype=np.float64)


def undirected_pairs(edge_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The undirected pairs ``i < j`` of a symmetric graph and, for each, its ``(i, j)`` edge id.

    A view keeps or drops the pair ``{i, j}`` as a whole with the probability of row ``i``
    (spec A4.4), so views stay symmetric.
    """
    edge_index = np.asarray(edge_index, dtype=np.int64)
    ids = np.flatnonzero(edge_index[0] < edge_index[1])
    return edge_index[:, ids], ids


def sample_view(pairs: Tensor, drop_prob: Tensor, *, generator: torch.Generator | None = None,
                training: bool = True) -> Tensor:
    """Draw one augmented graph: keep pair ``{i, j}`` iff ``u >= P_ij``, ``u ~ U(0, 1)``; mirror it.

    Parameters
    ----------
    pairs
        ``(2, U)`` undirected pairs with ``i < j`` (see :func:`undirected_pairs`), on the CPU.
    drop_prob
        ``(U,)`` drop probability of each pair.
    generator
        Random generator (default: torch's global one).
    training
        ``False`` keeps every pair (no-op).

    Returns
    -------
    ``(2, 2 * kept)`` int64 symmetric ``edge_index`` (a subset of the input graph).
    """
    if training:
        u = torch.rand(pairs.shape[1], generator=generator, dtype=torch.float64)
        kept = pairs[:, u >= drop_prob]
    else:
        kept = pairs
    return torch.cat([kept, kept.flip(0)], dim=1)


class PairKeeps:
    """Symmetric views as :func:`sample_view` draws them, as keep-masks over another ordering of the same
    directed edges (e.g. :attr:`~spatialdomains.nn.SpatialBatchSampler.edge_index`, sorted by target).

    Parameters
    ----------
    edge_index
        ``(2, E)`` the directed edges to return masks for (both directions of every pair present).
    pairs
        ``(2, U)`` undirected pairs ``i < j`` (:func:`undirected_pairs`).
    drop_probs
        One ``(U,)`` drop-probability tensor per view.
    """

    def __init__(self, edge_index, pairs, drop_probs, num_nodes: int):
        ei = np.asarray(torch.as_tensor(edge_index).cpu())
        pr = np.asarray(torch.as_tensor(pairs).cpu())
        keys = pr[0].astype(np.int64) * num_nodes + pr[1]
        order = np.argsort(keys)
        lo, hi = np.minimum(ei[0], ei[1]), np.maximum(ei[0], ei[1])
        pos = np.searchsorted(keys[order], lo.astype(np.int64) * num_nodes + hi)
        if pos.size and (pos.max() >= keys.size or not np.array_equal(keys[order][pos], lo * num_nodes + hi)):
            raise ValueError("PairKeeps: edge_index has an edge that is not one of the pairs")
        self.pair_of_edge = torch.as_tensor(order[pos])
        self.drop_probs = [torch.as_tensor(d) for d in drop_probs]

    def __call__(self) -> list[Tensor]:
        """One ``(E,)`` bool keep-mask per view (torch's global generator, one uniform per pair)."""
        return [(torch.rand(d.shape[0], dtype=torch.float64) >= d)[self.pair_of_edge] for d in self.drop_probs]
