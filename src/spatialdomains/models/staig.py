"""STAIG: image-aided graph contrastive learning of spatial domains (Yang et al., Nat Commun 2025).

Clean-room implementation of ``spec/algorithms.md`` PART A, with the scalable loss of PART D3.

Pieces, each usable on its own:

* edge-drop probabilities (spec A4): :func:`image_edge_probabilities`,
  :func:`gene_edge_probabilities`, :func:`fixed_edge_probabilities`; views are drawn by
  :func:`sample_view` from the undirected pairs of :func:`undirected_pairs`;
* feature masking (spec A5): :func:`feature_mask`, :func:`mask_features`;
* the model (spec A5): :class:`StaigEncoder` (GCN, one shared PReLU), :class:`ProjectionHead`
  (Linear-ELU-Linear), :class:`StaigModel`; ``forward`` returns embeddings, never a loss;
* the neighbour-contrastive loss (spec A6) in its plain, debiased (DS) and multi-slice forms:
  :func:`staig_loss`. Its all-pairs denominator is computed exactly in row blocks by a custom
  autograd function (memory O(block x N + E), never an N x N tensor), or estimated from sampled
  same-slice negatives for very large N. The dense reference lives in ``tests/unit/test_staig.py``;
* :func:`fit_staig`, registered as method ``"staig"``.

Deliberate departures from the reference code are listed in ``docs/methods.md`` (STAIG section).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import _logging as logg
from .._constants import IMAGE_FEATURES, SLICE_KEY, SPATIAL_CONN
from .._utils import InputError, seed_everything
from ..pp import PrepConfig
from . import MethodSpec, register
from ._base import FitResult

__all__ = [
    "StaigConfig",
    "STAIG_PREP",
    "STAIG_PREP_MULTI",
    "image_edge_probabilities",
    "gene_edge_probabilities",
    "fixed_edge_probabilities",
    "undirected_pairs",
    "sample_view",
    "feature_mask",
    "mask_features",
    "gcn_adjacency",
    "SparseFeatures",
    "StaigEncoder",
    "ProjectionHead",
    "StaigModel",
    "LossPlan",
    "make_loss_plan",
    "staig_loss",
    "pseudo_labels",
    "fit_staig",
]

EDGE_DROP_SOURCES = ("auto", "image", "gene", "fixed")
#: Features at most this dense are kept sparse (CSR) on the device: the first layer's products then
#: cost O(nnz) instead of O(N G).
SPARSE_DENSITY = 0.3
LOG2E = 1.0 / math.log(2.0)
LOSS_MODES = ("exact", "sampled")


# ------------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StaigConfig:
    """Hyperparameters of STAIG (one default for every slice of a platform; see ``docs/methods.md``).

    Parameters
    ----------
    epochs
        Optimisation steps (full batch; one step per epoch).
    lr, weight_decay
        Adam settings (spec A7: 5e-4, 1e-5).
    num_layers
        GCN depth: 1 (``G -> hidden``) or 2 (``G -> 2*hidden -> hidden``).
    hidden, proj
        Encoder output size and projection-head size (64, 64).
    tau
        Temperature of the contrastive loss. 20 (the paper says 10, the reference configs use 17-35 on
        DLPFC): best of 1/3/10/20/35 on DLPFC 151673 + 151676 (docs/methods.md).
    p_f1, p_f2
        Probability of masking each feature column in view 1 / view 2.
    edge_drop
        Where the per-edge drop probabilities come from: ``"image"`` (distances in
        ``obsm['X_image']``), ``"gene"`` (cosine distance of expression PCs), ``"fixed"``
        (``p_e1``/``p_e2``), or ``"auto"`` (image when ``obsm['X_image']`` exists, else gene).
    p_e1, p_e2
        Edge-drop rates of the two views for ``edge_drop="fixed"``.
    gene_pcs
        Principal components of the standardised features for ``edge_drop="gene"``.
    debiased
        Use the debiased strategy (DS) on a single slice with image features.
    n_pseudo
        Number Q of image pseudo-clusters for DS.
    ds_reference
        Reproduce the reference DS quirks (``exp(1/tau)`` subtracted although the mask already
        removes the self term; same-pseudo-label positives left out of the denominator). Off: the
        denominator holds every positive plus the different-pseudo-label negatives.
    loss
        ``"exact"`` (blocked, exact) or ``"sampled"`` (``n_negatives`` uniform same-slice
        negatives per slice and epoch, scaled by the slice size).
    block_size
        Anchor rows per block of the exact loss; 0 = from ``memory_budget_mb``.
    memory_budget_mb
        Memory for one block of similarities (sets the automatic block size).
    n_negatives
        Negatives per slice for ``loss="sampled"``.
    dtype
        ``"float32"`` or ``"float64"``.
    """

    epochs: int = 400
    lr: float = 5e-4
    weight_decay: float = 1e-5
    num_layers: int = 1
    hidden: int = 64
    proj: int = 64
    tau: float = 20.0
    p_f1: float = 0.1
    p_f2: float = 0.2
    edge_drop: str = "auto"
    p_e1: float = 0.1
    p_e2: float = 0.3
    gene_pcs: int = 64
    debiased: bool = True
    n_pseudo: int = 80
    ds_reference: bool = False
    loss: str = "exact"
    block_size: int = 0
    memory_budget_mb: int = 128
    n_negatives: int = 2048
    dtype: str = "float32"

    def __post_init__(self):
        name = type(self).__name__
        if self.epochs < 0:
            raise ValueError(f"{name}: epochs must be >= 0, got {self.epochs}")
        if self.num_layers not in (1, 2):
            raise ValueError(f"{name}: num_layers must be 1 or 2, got {self.num_layers}")
        if self.tau <= 0:
            raise ValueError(f"{name}: tau must be > 0, got {self.tau}")
        for key in ("p_f1", "p_f2", "p_e1", "p_e2"):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name}: {key} must lie in [0, 1), got {value}")
        if self.edge_drop not in EDGE_DROP_SOURCES:
            raise ValueError(f"{name}: edge_drop must be one of {EDGE_DROP_SOURCES}, got {self.edge_drop!r}")
        if self.loss not in LOSS_MODES:
            raise ValueError(f"{name}: loss must be one of {LOSS_MODES}, got {self.loss!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"{name}: dtype must be float32 or float64, got {self.dtype!r}")
        if min(self.hidden, self.proj, self.gene_pcs, self.n_pseudo, self.n_negatives) < 1:
            raise ValueError(f"{name}: hidden, proj, gene_pcs, n_pseudo and n_negatives must be >= 1")
        if self.block_size < 0 or self.memory_budget_mb < 1:
            raise ValueError(f"{name}: block_size must be >= 0 and memory_budget_mb >= 1")


#: Expression preprocessing (spec A1.1, with scaling that works across slices; see docs/methods.md).
STAIG_PREP = PrepConfig(n_top_genes=3000, hvg_flavor="seurat_v3", normalize_scope="all", target_sum=1e4,
                        log1p=True, scale="sd", max_value=10.0)
#: Several slices: the same recipe, HVGs per slice then intersected (spec A1.3 uses 5000 per slice).
STAIG_PREP_MULTI = STAIG_PREP.replace(n_top_genes=5000)


# ------------------------------------------------------------------------------------------------
# edge-drop probabilities and views (spec A4) -- all O(E)
# ------------------------------------------------------------------------------------------------
def _row_normalise(values: np.ndarray, src: np.ndarray, num_nodes: int) -> np.ndarray:
    rowsum = np.bincount(src, weights=values, minlength=num_nodes)
    denom = rowsum[src]
    out = np.zeros_like(values, dtype=np.float64)
    ok = denom > 0
    out[ok] = values[ok] / denom[ok]
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
    dist = np.linalg.norm(feats[src] - feats[dst], axis=1)
    return _row_normalise(dist, src, feats.shape[0])


def _gene_pcs(x: np.ndarray, n_pcs: int, seed: int = 42) -> np.ndarray:
    from sklearn.decomposition import PCA

    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(0)
    sd = x.std(0)
    sd[sd == 0] = 1.0
    z = (x - mean) / sd
    n_pcs = int(min(n_pcs, z.shape[0] - 1, z.shape[1]))
    if n_pcs < 1:
        return z
    solver = "randomized" if max(z.shape) > 500 else "full"
    return PCA(n_components=n_pcs, random_state=seed, svd_solver=solver).fit_transform(z)


def gene_edge_probabilities(edge_index: np.ndarray, x: np.ndarray, *, n_pcs: int = 64, seed: int = 42,
                            pcs: np.ndarray | None = None) -> np.ndarray:
    """Drop probability per directed edge from expression (spec A4.2, no image).

    Features are standardised per gene and reduced to ``n_pcs`` principal components;
    ``W_e = 1 - cos(pc_i, pc_j)``; ``P_e`` = softmax of ``W`` over the source node's neighbours
    (close to ``1/deg``, tilted towards dissimilar neighbours). Pass ``pcs`` to reuse components.
    """
    edge_index = np.asarray(edge_index, dtype=np.int64)
    if pcs is None:
        pcs = _gene_pcs(x, n_pcs, seed)
    pcs = np.asarray(pcs, dtype=np.float64)
    norm = np.linalg.norm(pcs, axis=1, keepdims=True)
    unit = pcs / np.where(norm > 0, norm, 1.0)
    src, dst = edge_index
    w = 1.0 - np.einsum("ij,ij->i", unit[src], unit[dst])
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
    training
        ``False`` keeps every pair (no-op, as PyG's augmentations).

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


def feature_mask(num_features: int, p: float, *, generator: torch.Generator | None = None,
                 training: bool = True) -> Tensor:
    """``(G,)`` float mask with each column zeroed independently with probability ``p`` (spec A5)."""
    if not training or p <= 0:
        return torch.ones(num_features)
    return (torch.rand(num_features, generator=generator) >= p).to(torch.get_default_dtype())


def mask_features(x: Tensor, p: float, *, generator: torch.Generator | None = None,
                  training: bool = True) -> tuple[Tensor, Tensor]:
    """Zero the same randomly chosen feature columns for every spot; return ``(x_masked, mask)``."""
    mask = feature_mask(x.shape[1], p, generator=generator, training=training).to(x.device, x.dtype)
    return x * mask, mask


# ------------------------------------------------------------------------------------------------
# model (spec A5)
# ------------------------------------------------------------------------------------------------
def gcn_adjacency(edge_index: Tensor, num_nodes: int, *, dtype: torch.dtype = torch.float32) -> Tensor:
    r"""GCN propagation matrix :math:`\tilde D^{-1/2}(A + I)\tilde D^{-1/2}` as a sparse CSR tensor.

    ``edge_index`` must be symmetric; duplicates and existing self loops are merged (binary A), as
    PyG's ``gcn_norm`` does with unit weights. O(E log E).
    """
    edge_index = torch.as_tensor(edge_index, dtype=torch.long)
    device = edge_index.device
    loops = torch.arange(num_nodes, device=device)
    key = torch.cat([edge_index[0] * num_nodes + edge_index[1], loops * (num_nodes + 1)])
    key = torch.unique(key)  # sorted by (row, col), no duplicates
    rows, cols = key // num_nodes, key % num_nodes
    count = torch.bincount(rows, minlength=num_nodes)
    dinv = count.to(dtype).rsqrt()
    values = dinv[rows] * dinv[cols]
    crow = torch.zeros(num_nodes + 1, dtype=torch.long, device=device)
    torch.cumsum(count, 0, out=crow[1:])
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, cols, values, (num_nodes, num_nodes))


class _SymmetricSpmm(torch.autograd.Function):
    """``adj @ x`` for a symmetric constant sparse ``adj``: the backward product is ``adj @ grad``
    (no sparse transpose per call)."""

    @staticmethod
    def forward(ctx, adj, x):
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx, grad):
        return None, ctx.adj @ grad


class _SparseLinear(torch.autograd.Function):
    """``x @ weight.T`` for a constant sparse ``x`` (CSR) whose transpose is kept for the gradient."""

    @staticmethod
    def forward(ctx, weight, x, xt):
        ctx.xt = xt
        return x @ weight.T

    @staticmethod
    def backward(ctx, grad):
        return (ctx.xt @ grad).T, None, None


class SparseFeatures:
    """A constant sparse feature matrix (``(N, G)`` CSR plus its transpose for weight gradients).

    Passed to :class:`StaigEncoder` in place of a dense tensor when most entries are zero (STAIG's
    default scaling keeps zeros), which makes the first layer's products several times cheaper.
    """

    def __init__(self, x: Tensor):
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            x = x.to_sparse_csr() if x.layout != torch.sparse_csr else x
            self.x = x
            self.xt = x.t().to_sparse_csr()

    @property
    def shape(self) -> torch.Size:
        return self.x.shape

    def linear(self, weight: Tensor) -> Tensor:
        return _SparseLinear.apply(weight, self.x, self.xt)


def _as_adjacency(edge_index, num_nodes: int, dtype: torch.dtype) -> Tensor:
    if isinstance(edge_index, Tensor) and edge_index.layout == torch.sparse_csr:
        return edge_index
    return gcn_adjacency(edge_index, num_nodes, dtype=dtype)


def _make_conv(in_channels: int, out_channels: int):
    from torch_geometric.nn import GCNConv

    class SymmetricGCNConv(GCNConv):
        """:class:`~torch_geometric.nn.GCNConv` fed the normalised symmetric adjacency of
        :func:`gcn_adjacency` (so ``normalize=False``); aggregation is one sparse product."""

        def __init__(self, in_channels: int, out_channels: int):
            super().__init__(in_channels, out_channels, normalize=False, add_self_loops=False)

        def message_and_aggregate(self, adj_t: Tensor, x: Tensor) -> Tensor:
            return _SymmetricSpmm.apply(adj_t, x)

    return SymmetricGCNConv(in_channels, out_channels)


class StaigEncoder(nn.Module):
    r"""GCN encoder of STAIG: ``L`` :class:`~torch_geometric.nn.GCNConv` layers, each followed by
    one PReLU shared by all layers (a single learnable slope, initial value 0.25).

    ``L = 1``: :math:`G \to h`; ``L = 2``: :math:`G \to 2h \to h`. Propagation uses
    :math:`\hat A = \tilde D^{-1/2}(A + I)\tilde D^{-1/2}` (PyG's GCN normalisation), built per view
    by :func:`gcn_adjacency` since every view has its own graph.

    Args:
        in_channels (int): number of input features :math:`G`.
        hidden (int, optional): output size :math:`h`. (default: :obj:`64`)
        num_layers (int, optional): 1 or 2. (default: :obj:`1`)

    Shapes:
        - **input:** node features :math:`(|V|, G)` (dense, or :class:`SparseFeatures`), edge
          indices :math:`(2, |E|)` or the sparse matrix of :func:`gcn_adjacency`, optional feature
          mask :math:`(G,)`
        - **output:** node embeddings :math:`(|V|, h)`
    """

    def __init__(self, in_channels: int, hidden: int = 64, num_layers: int = 1):
        super().__init__()
        if num_layers not in (1, 2):
            raise ValueError(f"{type(self).__name__}: num_layers must be 1 or 2, got {num_layers}")
        self.in_channels = in_channels
        self.hidden = hidden
        self.num_layers = num_layers
        sizes = [in_channels, hidden] if num_layers == 1 else [in_channels, 2 * hidden, hidden]
        self.convs = nn.ModuleList(_make_conv(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.act = nn.PReLU()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.convs:
            conv.reset_parameters()
        self.act.reset_parameters()

    def _first(self, x, weight: Tensor) -> Tensor:
        return x.linear(weight) if isinstance(x, SparseFeatures) else F.linear(x, weight)

    def _layers(self, xw: Tensor, adj: Tensor) -> Tensor:
        first = self.convs[0]
        h = self.act(first.propagate(adj, x=xw, edge_weight=None) + first.bias)
        for conv in self.convs[1:]:
            h = self.act(conv(h, adj))
        return h

    def forward(self, x, edge_index, feature_mask: Tensor | None = None) -> Tensor:
        weight = self.convs[0].lin.weight
        # X diag(m) W^T == X (W diag(m))^T: mask the weight columns instead of copying X
        if feature_mask is not None:
            weight = weight * feature_mask
        adj = _as_adjacency(edge_index, x.shape[0], weight.dtype)
        return self._layers(self._first(x, weight), adj)

    def forward_views(self, x, edge_indices: Sequence, feature_masks: Sequence[Tensor]) -> list[Tensor]:
        """Encode several views of the same features with one matrix product for the first layer."""
        first = self.convs[0]
        weight = torch.cat([first.lin.weight * m for m in feature_masks], dim=0)
        parts = self._first(x, weight).split(first.out_channels, dim=1)
        adjs = [_as_adjacency(ei, x.shape[0], weight.dtype) for ei in edge_indices]
        return [self._layers(xw, adj) for xw, adj in zip(parts, adjs)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.hidden}, num_layers={self.num_layers})"


class ProjectionHead(nn.Module):
    """Projection head ``Linear(h, p) -> ELU -> Linear(p, p)`` (spec A5).

    Shapes:
        - **input:** :math:`(|V|, h)`
        - **output:** :math:`(|V|, p)`
    """

    def __init__(self, in_channels: int = 64, out_channels: int = 64):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.fc1 = nn.Linear(in_channels, out_channels)
        self.fc2 = nn.Linear(out_channels, out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.fc1.reset_parameters()
        self.fc2.reset_parameters()

    def forward(self, h: Tensor) -> Tensor:
        return self.fc2(F.elu(self.fc1(h)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels})"


class StaigModel(nn.Module):
    """Encoder + projection head; ``forward`` returns the projected embedding ``g(f(X, E))``.

    Shapes:
        - **input:** node features :math:`(|V|, G)`, edge indices :math:`(2, |E|)`
        - **output:** :math:`(|V|, p)`
    """

    def __init__(self, encoder: StaigEncoder, head: ProjectionHead):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def reset_parameters(self) -> None:
        self.encoder.reset_parameters()
        self.head.reset_parameters()

    def forward(self, x, edge_index, feature_mask: Tensor | None = None) -> Tensor:
        return self.head(self.encoder(x, edge_index, feature_mask))

    def forward_views(self, x, edge_indices: Sequence, feature_masks: Sequence[Tensor]) -> list[Tensor]:
        return [self.head(h) for h in self.encoder.forward_views(x, edge_indices, feature_masks)]


# ------------------------------------------------------------------------------------------------
# loss (spec A6, scalable form D3)
# ------------------------------------------------------------------------------------------------
@dataclass
class LossPlan:
    """Everything of the loss that is constant across epochs (built once by :func:`make_loss_plan`).

    Nodes are visited in slice-sorted order (``perm``), so "same slice" is a contiguous range and
    the slice mask is never materialised. The exact denominator works on the ``2N`` stacked
    embeddings of both views, slice by slice (``stack_index``, ``stack_segments``).
    """

    num_nodes: int
    perm: Tensor | None  #: node order with slices contiguous (None: already contiguous)
    segments: list[tuple[int, int]]  #: (start, end) of each slice in the sorted order
    stack_index: Tensor | None  #: (2N,) rows of cat([z1, z2]) in slice-major stacked order
    stack_segments: list[tuple[int, int]]  #: (start, end) of each slice in the stacked order
    src: Tensor  #: positive edges (sorted order), source
    dst: Tensor  #: positive edges (sorted order), target
    edge_weight: Tensor  #: 1 for same-slice positives, 0 otherwise (multi-slice mask on the numerator)
    log_count: Tensor  #: log(2 deg_i + 1), sorted order
    labels: Tensor | None  #: DS pseudo-labels, sorted order
    stack_labels: Tensor | None  #: DS pseudo-labels, stacked order
    same_label_edge: Tensor | None  #: 1 where a positive edge joins equal pseudo-labels
    ds_reference: bool
    block_size: int  #: tile size of the exact loss; 0 = automatic
    memory_budget_mb: int
    workspace: dict = field(default_factory=dict, repr=False)  #: reusable buffers (not constants)

    def to(self, device) -> "LossPlan":
        moved = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in self.__dict__.items()}
        moved["workspace"] = {}
        return LossPlan(**moved)

    @property
    def variant(self) -> str:
        if self.labels is not None:
            return "debiased"
        return "multi" if len(self.segments) > 1 else "plain"


def make_loss_plan(edge_index, num_nodes: int, *, slice_ids=None, pseudo_labels=None, ds_reference: bool = False,
                   block_size: int = 0, memory_budget_mb: int = 256) -> LossPlan:
    """Precompute the constant parts of :func:`staig_loss`.

    Parameters
    ----------
    edge_index
        ``(2, E)`` positive pairs: the original, un-augmented symmetric graph (spec A6), without
        self loops (they are removed here).
    num_nodes
        N.
    slice_ids
        ``(N,)`` slice of each node; negatives are restricted to the anchor's slice.
    pseudo_labels
        ``(N,)`` DS pseudo-labels (image k-means); negatives must carry another label.
    ds_reference
        Reproduce the reference DS quirks (see :class:`StaigConfig`).
    block_size
        Tile size of the exact loss (0: automatic).
    memory_budget_mb
        Memory for similarity tiles; when every tile of a slice fits, tiles are kept between the
        value and gradient passes instead of being recomputed.
    """
    ei = torch.as_tensor(np.asarray(edge_index), dtype=torch.long)
    ei = ei[:, ei[0] != ei[1]]
    if slice_ids is None:
        codes = np.zeros(num_nodes, dtype=np.int64)
    else:
        _, codes = np.unique(np.asarray(slice_ids), return_inverse=True)
        codes = codes.astype(np.int64).reshape(-1)
    if codes.shape[0] != num_nodes:
        raise InputError(f"slice ids have length {codes.shape[0]}, expected {num_nodes}")
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    bounds = np.flatnonzero(np.diff(sorted_codes)) + 1
    starts = np.concatenate([[0], bounds]).astype(np.int64)
    ends = np.concatenate([bounds, [num_nodes]]).astype(np.int64)
    segments = [(int(a), int(b)) for a, b in zip(starts, ends)]
    identity = bool(np.all(order == np.arange(num_nodes)))
    rank = np.empty(num_nodes, dtype=np.int64)
    rank[order] = np.arange(num_nodes)
    rank_t = torch.as_tensor(rank)
    src, dst = rank_t[ei[0]], rank_t[ei[1]]
    codes_sorted_t = torch.as_tensor(sorted_codes)
    edge_weight = (codes_sorted_t[src] == codes_sorted_t[dst]).to(torch.get_default_dtype())
    deg = torch.bincount(src, minlength=num_nodes).to(torch.float64)
    log_count = torch.log(2 * deg + 1)
    # stacked order: for each slice, its view-1 rows then its view-2 rows
    if len(segments) == 1:
        stack = None
    else:
        stack = np.concatenate([np.concatenate([np.arange(a, b), num_nodes + np.arange(a, b)]) for a, b in segments])
    stack_segments = [(2 * a, 2 * b) for a, b in segments]
    labels = stack_labels = same = None
    if pseudo_labels is not None:
        lab = np.asarray(pseudo_labels)
        if lab.shape[0] != num_nodes:
            raise InputError(f"pseudo-labels have length {lab.shape[0]}, expected {num_nodes}")
        _, lab = np.unique(lab, return_inverse=True)
        labels = torch.as_tensor(lab.reshape(-1)[order].astype(np.int64))
        both = torch.cat([labels, labels])
        stack_labels = both if stack is None else both[torch.as_tensor(stack)]
        same = (labels[src] == labels[dst]).to(torch.get_default_dtype())
    return LossPlan(num_nodes=num_nodes, perm=None if identity else torch.as_tensor(order), segments=segments,
                    stack_index=None if stack is None else torch.as_tensor(stack), stack_segments=stack_segments,
                    src=src, dst=dst, edge_weight=edge_weight, log_count=log_count, labels=labels,
                    stack_labels=stack_labels, same_label_edge=same, ds_reference=ds_reference,
                    block_size=int(block_size), memory_budget_mb=int(memory_budget_mb))


def _auto_tile(length: int, device: torch.device) -> int:
    """Tile side for the exact loss: large enough for efficient matrix products, small enough that
    one tile (and its temporary) stays small; GPUs get larger tiles."""
    base = 4096 if device.type == "cuda" else 1024
    return int(max(1, min(length, base)))


def _buffer(workspace: dict, name: str, size: int, dtype, device) -> Tensor:
    """A flat scratch buffer of at least ``size`` elements, reused across calls (no page faults)."""
    key = (name, dtype, str(device))
    buf = workspace.get(key)
    if buf is None or buf.numel() < size:
        buf = workspace[key] = torch.empty(size, dtype=dtype, device=device)
    return buf


def _tiles(length: int, tile: int) -> list[tuple[int, int]]:
    return [(s, min(s + tile, length)) for s in range(0, length, tile)]


class _PairwiseLogSum(torch.autograd.Function):
    r"""``sum_k w * log(D_k + extra_k)`` over the ``2N`` stacked embeddings of both views, with

    ``D_k = sum_{l != k, same slice, label_l != label_k} exp((z_k . z_l - 1) / tau)``.

    For view-1 row ``i`` this is the reference denominator ``sum_j phi^11_ij + sum_j phi^12_ij``
    without ``phi^11_ii`` (and likewise for view 2), so both directions of the loss come from one
    symmetric matrix. Only its upper-triangular tiles are formed (half the products); each tile
    adds its row sums to the rows and its column sums to the columns. The gradient needs
    ``dL/dD = w / D`` of every row, so it is a second pass over the tiles, which are kept when they
    fit in the memory budget and recomputed otherwise. Memory: O(tile^2) (+ kept tiles) and O(N d).
    ``backward`` only rescales the gradients stored by ``forward``.
    """

    @staticmethod
    def forward(ctx, z, extra, tau, weight, segments, labels, tile, budget_mb, need_grad, workspace):
        inv_tau = 1.0 / tau
        dtype, device = z.dtype, z.device
        elem = z.element_size()
        den = torch.zeros(z.shape[0], dtype=dtype, device=device)
        grad_z = torch.zeros_like(z) if need_grad else None
        # exp(x) = 2^(x log2 e): exp2 is several times faster than exp on CPUs
        scale2 = LOG2E * inv_tau
        bias = torch.tensor(-scale2, dtype=dtype, device=device)
        for a, b in segments:
            length = b - a
            t = min(tile or _auto_tile(length, device), length)
            tiles = _tiles(length, t)
            pairs = [(i, j) for i in range(len(tiles)) for j in range(i, len(tiles))]
            n_entries = sum((tiles[i][1] - tiles[i][0]) * (tiles[j][1] - tiles[j][0]) for i, j in pairs)
            keep = need_grad and len(pairs) > 1 and n_entries * elem <= budget_mb * 2**20
            store = _buffer(workspace, "store", n_entries if keep else t * t, dtype, device)
            tmp = _buffer(workspace, "tmp", t * t, dtype, device)
            zs = z[a:b]
            lab = labels[a:b] if labels is not None else None
            ds = den[a:b]

            def tile_at(p: int, offset: int) -> Tensor:
                i, j = pairs[p]
                (i0, i1), (j0, j1) = tiles[i], tiles[j]
                blk = store[offset: offset + (i1 - i0) * (j1 - j0)].view(i1 - i0, j1 - j0)
                torch.addmm(bias, zs[i0:i1], zs[j0:j1].T, alpha=scale2, out=blk)  # (cos - 1) / tau, base 2
                blk.exp2_()
                if lab is not None:  # DS: pairs with the same pseudo-label are not negatives
                    blk.masked_fill_(lab[i0:i1, None] == lab[None, j0:j1], 0.0)
                if i == j:  # a node is not its own negative
                    blk.diagonal().zero_()
                return blk

            offsets = []
            offset = 0
            for p, (i, j) in enumerate(pairs):
                blk = tile_at(p, offset if keep else 0)
                offsets.append(offset)
                (i0, i1), (j0, j1) = tiles[i], tiles[j]
                ds[i0:i1] += blk.sum(1)
                if i != j:
                    ds[j0:j1] += blk.sum(0)
                if keep:
                    offset += (i1 - i0) * (j1 - j0)
            if not need_grad:
                continue
            g = (weight * inv_tau) / (ds if extra is None else ds + extra[a:b])
            gz = grad_z[a:b]
            for p, (i, j) in enumerate(pairs):
                (i0, i1), (j0, j1) = tiles[i], tiles[j]
                if keep:
                    blk = store[offsets[p]: offsets[p] + (i1 - i0) * (j1 - j0)].view(i1 - i0, j1 - j0)
                else:
                    blk = tile_at(p, 0)
                coef = tmp[: (i1 - i0) * (j1 - j0)].view(i1 - i0, j1 - j0)
                torch.add(g[i0:i1, None], g[None, j0:j1], out=coef)
                blk.mul_(coef)  # dL/d(z_k . z_l)
                gz[i0:i1].addmm_(blk, zs[j0:j1])
                if i != j:
                    gz[j0:j1].addmm_(blk.T, zs[i0:i1])
        total_den = den if extra is None else den + extra
        total = torch.log(total_den).sum(dtype=torch.float64) * weight
        grad_extra = None
        if need_grad and extra is not None:
            grad_extra = weight / total_den
        ctx.save_for_backward(grad_z, grad_extra)
        return total.to(dtype)

    @staticmethod
    def backward(ctx, grad_out):
        grad_z, grad_extra = ctx.saved_tensors
        outs = [None if g is None else g * grad_out for g in (grad_z, grad_extra)]
        return (*outs, None, None, None, None, None, None, None, None)


class _SampledLogDenominator(torch.autograd.Function):
    """``sum_i w * log(D_i + extra_i)`` with ``D_i`` estimated from sampled columns (one direction).

    ``D_i = (n_s / M) sum_{m} mask * [exp((za_i.za_{c_m} - 1)/tau) [c_m != i] + exp((za_i.zb_{c_m} - 1)/tau)]``
    with ``c_1..c_M`` uniform in the anchor's slice. Rows are processed in blocks; each block is
    complete after its row sums, so the gradient is accumulated in the same pass.
    """

    @staticmethod
    def forward(ctx, za, zb, extra, tau, weight, segments, labels, budget_mb, need_grad):
        inv_tau = 1.0 / tau
        dtype, device = za.dtype, za.device
        total = torch.zeros((), dtype=torch.float64, device=device)
        gza = torch.zeros_like(za) if need_grad else None
        gzb = torch.zeros_like(zb) if need_grad else None
        gextra = torch.zeros_like(extra) if (need_grad and extra is not None) else None
        bias = torch.tensor(-LOG2E * inv_tau, dtype=dtype, device=device)
        for r0, r1, cols, scale in segments:
            c = torch.cat([za[cols], zb[cols]])
            m = cols.shape[0]
            col_labels = labels[cols] if labels is not None else None
            gc = torch.zeros_like(c) if need_grad else None
            per_row = 2 * m * za.element_size() + 2 * m
            bs = int(max(1, min(r1 - r0, (budget_mb * 2**20) // per_row)))
            for b0 in range(r0, r1, bs):
                b1 = min(b0 + bs, r1)
                a = za[b0:b1]
                blk = torch.addmm(bias, a, c.T, alpha=LOG2E * inv_tau)
                blk.exp2_()
                if labels is not None:
                    same = labels[b0:b1, None] == col_labels[None, :]
                    blk.view(b1 - b0, 2, m).masked_fill_(same[:, None, :], 0.0)
                hit = torch.arange(b0, b1, device=device)[:, None] == cols[None, :]
                blk[:, :m].masked_fill_(hit, 0.0)
                den = blk.sum(1) * scale
                if extra is not None:
                    den = den + extra[b0:b1]
                total += torch.log(den).sum(dtype=torch.float64) * weight
                if need_grad:
                    g = weight / den
                    if gextra is not None:
                        gextra[b0:b1] = g
                    blk.mul_((g * (scale * inv_tau))[:, None])
                    gza[b0:b1].addmm_(blk, c)
                    gc.addmm_(blk.T, a)
            if need_grad:
                gza.index_add_(0, cols, gc[:m])
                gzb.index_add_(0, cols, gc[m:])
        ctx.save_for_backward(gza, gzb, gextra)
        return total.to(dtype)

    @staticmethod
    def backward(ctx, grad_out):
        gza, gzb, gextra = ctx.saved_tensors
        outs = [None if g is None else g * grad_out for g in (gza, gzb, gextra)]
        return (*outs, None, None, None, None, None, None)


def staig_loss(h1: Tensor, h2: Tensor, plan: LossPlan, *, tau: float, mode: str = "exact",
               n_negatives: int = 2048, generator: torch.Generator | None = None) -> Tensor:
    r"""STAIG's symmetrised neighbour-contrastive loss (spec A6), without any N x N tensor.

    With :math:`\phi^{ab}_{ij} = \exp(\cos(h^a_i, h^b_j)/\tau)` and :math:`\mathcal N(i)` the
    neighbours in the original graph:

    * positives :math:`\mathrm{pos}_i = \phi^{ab}_{ii} + \sum_{j\in\mathcal N(i)} (\phi^{aa}_{ij} + \phi^{ab}_{ij})`
      (edge-wise gathers, O(E));
    * denominator :math:`\mathrm{den}_i = \sum_j M_{ij}(\phi^{aa}_{ij} + \phi^{ab}_{ij}) - \phi^{aa}_{ii}`
      with :math:`M` = all ones (plain), same slice (multi-slice) or different pseudo-label (DS,
      see ``ds_reference``), computed in tiles (exact) or from sampled negatives;
    * :math:`\ell_i = -\log(\mathrm{pos}_i / ((2|\mathcal N(i)|+1)\,\mathrm{den}_i))`,
      :math:`\mathcal L = \frac1N\sum_i \tfrac12(\ell^{12}_i + \ell^{21}_i)`.

    All exponentials are shifted by :math:`-1/\tau` (the shift cancels in the ratio), so small
    temperatures cannot overflow.

    Parameters
    ----------
    h1, h2
        ``(N, d)`` projected embeddings of the two views.
    plan
        From :func:`make_loss_plan` (graph, slices, pseudo-labels, tile size).
    tau
        Temperature.
    mode
        ``"exact"`` or ``"sampled"`` (``n_negatives`` uniform negatives per slice and direction,
        scaled by the slice size: unbiased for the denominator, slightly biased after the log).
    generator
        Random generator for the sampled negatives (default: torch's global one).

    Returns
    -------
    Scalar loss tensor.
    """
    if mode not in LOSS_MODES:
        raise ValueError(f"staig_loss: mode must be one of {LOSS_MODES}, got {mode!r}")
    n = plan.num_nodes
    if h1.shape != h2.shape or h1.shape[0] != n:
        raise ValueError(f"staig_loss: embeddings {tuple(h1.shape)} / {tuple(h2.shape)} do not match {n} nodes")
    if plan.perm is not None:
        h1, h2 = h1[plan.perm], h2[plan.perm]
    z1 = F.normalize(h1, dim=1)
    z2 = F.normalize(h2, dim=1)
    inv_tau = 1.0 / tau
    src, dst, ew = plan.src, plan.dst, plan.edge_weight.to(z1.dtype)

    def shifted(a: Tensor, b: Tensor) -> Tensor:
        return torch.exp(((a * b).sum(1) - 1.0) * inv_tau)

    self12 = shifted(z1, z2)  # cross-view self pair, the same for both directions
    z1s, z1d, z2s, z2d = z1[src], z1[dst], z2[src], z2[dst]
    e11 = shifted(z1s, z1d) * ew
    e12 = shifted(z1s, z2d) * ew
    e22 = shifted(z2s, z2d) * ew
    e21 = shifted(z2s, z1d) * ew
    zeros = torch.zeros(n, dtype=z1.dtype, device=z1.device)
    pos12 = self12 + zeros.index_add(0, src, e11 + e12)
    pos21 = self12 + zeros.index_add(0, src, e22 + e21)

    extra12 = extra21 = None
    if plan.labels is not None:
        if plan.ds_reference:  # the reference subtracts exp(1/tau) although the mask removed i itself
            extra12 = extra21 = torch.full((n,), -1.0, dtype=z1.dtype, device=z1.device)
        else:  # keep every positive in the denominator: add back those the label mask removed
            same = plan.same_label_edge.to(z1.dtype)
            extra12 = self12 + zeros.index_add(0, src, (e11 + e12) * same)
            extra21 = self12 + zeros.index_add(0, src, (e22 + e21) * same)

    need = torch.is_grad_enabled() and (z1.requires_grad or z2.requires_grad)
    weight = 0.5 / n
    if mode == "exact":
        z = torch.cat([z1, z2])
        extra = None if extra12 is None else torch.cat([extra12, extra21])
        if plan.stack_index is not None:
            z = z[plan.stack_index]
            extra = None if extra is None else extra[plan.stack_index]
        logden = _PairwiseLogSum.apply(z, extra, tau, weight, plan.stack_segments, plan.stack_labels,
                                       plan.block_size, plan.memory_budget_mb, need, plan.workspace)
    else:
        logden = 0.0
        for za, zb, extra in ((z1, z2, extra12), (z2, z1, extra21)):
            segments = []
            for a, b in plan.segments:
                cols = torch.randint(a, b, (n_negatives,), generator=generator).to(z1.device)
                segments.append((a, b, cols, (b - a) / n_negatives))
            logden = logden + _SampledLogDenominator.apply(za, zb, extra, tau, weight, segments, plan.labels,
                                                           plan.memory_budget_mb, need)
    numerator = (torch.log(pos12).sum() + torch.log(pos21).sum() - 2 * plan.log_count.to(z1.dtype).sum()) * weight
    return logden - numerator


# ------------------------------------------------------------------------------------------------
# fitting
# ------------------------------------------------------------------------------------------------
def pseudo_labels(image_features: np.ndarray, n_clusters: int, *, random_state: int = 0) -> np.ndarray:
    """DS pseudo-labels: k-means with ``n_clusters`` on the image features (computed once)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    feats = np.asarray(image_features, dtype=np.float32)
    k = int(min(n_clusters, feats.shape[0]))
    if feats.shape[0] > 200_000:
        km = MiniBatchKMeans(n_clusters=k, random_state=random_state, n_init=3, batch_size=8192)
    else:
        km = KMeans(n_clusters=k, random_state=random_state, n_init=1)
    return km.fit_predict(feats).astype(np.int64)


def _features(adata) -> np.ndarray:
    x = adata.X
    x = x.toarray() if sp.issparse(x) else np.asarray(x)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] == 0:
        raise InputError(f"X must be a 2-d (spots x features) matrix, got shape {x.shape}")
    return x


def _edge_probabilities(config: StaigConfig, source: str, edge_index: np.ndarray, x: np.ndarray,
                        image: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if source == "image":
        p = image_edge_probabilities(edge_index, image)
        return p, p
    if source == "gene":
        p = gene_edge_probabilities(edge_index, x, n_pcs=config.gene_pcs)
        return p, p
    return fixed_edge_probabilities(edge_index, config.p_e1), fixed_edge_probabilities(edge_index, config.p_e2)


def fit_staig(adata, *, config: StaigConfig = StaigConfig(), device=None, seed: int = 0,
              n_domains: int | None = None, train_options=None) -> FitResult:
    """Train STAIG on a prepared group and return its embedding.

    Parameters
    ----------
    adata
        Prepared group (:func:`spatialdomains.pp.prepare_group`): ``X`` dense features,
        ``obsp['spatial_connectivities']`` the spatial graph, ``obs['slice']`` (optional for one
        slice) and optionally ``obsm['X_image']`` image features.
    config
        Hyperparameters.
    device
        ``None``/``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda[:N]"``.
    seed
        Seeds Python, NumPy and torch before the weights are initialised and views are drawn.
    n_domains
        Unused by training (kept for the common ``fit`` signature).
    train_options
        :class:`spatialdomains.train.TrainOptions` (checkpoints, resume, progress); default: the
        config's epochs, no checkpoint.

    Returns
    -------
    :class:`FitResult` with the ``(N, proj)`` float32 embedding (projection head on the full,
    un-augmented graph with unmasked features, spec A8) in ``adata.obs_names`` order, the loss
    history, CPU weights, and ``info`` = ``variant``, ``edge_drop_source``, ``device``,
    ``seconds_per_epoch``, peak memory and the loss block size. The caller writes ``info`` to
    ``uns``.
    """
    from ..graph import edge_index_from_adata
    from ..train import TrainOptions, resolve_device, run_training

    t_start = time.perf_counter()
    if SPATIAL_CONN not in adata.obsp:
        raise InputError(f"obsp['{SPATIAL_CONN}'] is missing: run spatialdomains prepare (it builds the spatial graph)")
    n = adata.n_obs
    if n < 3:
        raise InputError(f"STAIG needs at least 3 spots, got {n}")
    x_np = _features(adata)
    edge_index = edge_index_from_adata(adata)
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    if edge_index.shape[1] and not np.array_equal(np.sort(edge_index[0] * n + edge_index[1]),
                                                  np.sort(edge_index[1] * n + edge_index[0])):
        raise InputError(f"obsp['{SPATIAL_CONN}'] is not symmetric; rebuild it with spatialdomains.graph.spatial_graph")
    slices = adata.obs[SLICE_KEY].to_numpy() if SLICE_KEY in adata.obs else np.zeros(n, dtype=np.int64)
    n_slices = len(np.unique(slices))
    image = None
    if IMAGE_FEATURES in adata.obsm:
        image = np.asarray(adata.obsm[IMAGE_FEATURES], dtype=np.float64)
        if image.shape[0] != n or not np.isfinite(image).all():
            raise InputError(f"obsm['{IMAGE_FEATURES}'] must be a finite ({n}, q) array, got shape {image.shape}")

    source = config.edge_drop
    if source == "auto":
        source = "image" if image is not None else "gene"
    if source == "image" and image is None:
        raise InputError(f"edge_drop='image' needs image features in obsm['{IMAGE_FEATURES}']")
    if n_slices > 1:
        variant = "multi"
    elif image is not None and config.debiased:
        variant = "debiased"
    else:
        variant = "plain"

    seed_everything(seed)
    dev = resolve_device(device)
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    prob1, prob2 = _edge_probabilities(config, source, edge_index, x_np, image)
    pairs_np, pair_ids = undirected_pairs(edge_index)
    pairs = torch.as_tensor(pairs_np)
    drop1 = torch.as_tensor(prob1[pair_ids])
    drop2 = torch.as_tensor(prob2[pair_ids])
    labels = pseudo_labels(image, config.n_pseudo) if variant == "debiased" else None
    plan = make_loss_plan(edge_index, n, slice_ids=slices, pseudo_labels=labels, ds_reference=config.ds_reference,
                          block_size=config.block_size, memory_budget_mb=config.memory_budget_mb).to(dev)

    density = float(np.count_nonzero(x_np)) / max(x_np.size, 1)
    x = torch.as_tensor(x_np).to(dev, dtype)
    if density <= SPARSE_DENSITY:
        x = SparseFeatures(x)
    full_graph = gcn_adjacency(torch.as_tensor(edge_index).to(dev), n, dtype=dtype)
    model = StaigModel(StaigEncoder(x.shape[1], config.hidden, config.num_layers),
                       ProjectionHead(config.hidden, config.proj)).to(dev, dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    options = train_options or TrainOptions(epochs=config.epochs, progress=False)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def step(epoch: int) -> dict[str, Tensor]:
        views = [sample_view(pairs, drop1).to(dev), sample_view(pairs, drop2).to(dev)]
        masks = [feature_mask(x.shape[1], config.p_f1).to(dev, dtype),
                 feature_mask(x.shape[1], config.p_f2).to(dev, dtype)]
        h1, h2 = model.forward_views(x, views, masks)
        loss = staig_loss(h1, h2, plan, tau=config.tau, mode=config.loss, n_negatives=config.n_negatives)
        return {"loss": loss}

    logg.info(f"STAIG ({variant}, edge drop from {source}, {config.loss} loss) on {n} spots x {x.shape[1]} "
              f"features, {n_slices} slice(s), device {dev}")
    t_train = time.perf_counter()
    history = run_training(model, optimizer, step, options, name="staig")
    train_seconds = time.perf_counter() - t_train
    model.eval()
    with torch.no_grad():
        emb = model(x, full_graph).to(torch.float32).cpu().numpy()
    info: dict[str, Any] = {
        "variant": variant,
        "edge_drop_source": source,
        "device": str(dev),
        "n_slices": int(n_slices),
        "n_edges": int(edge_index.shape[1]),
        "feature_density": density,
        "train_seconds": train_seconds,
        "seconds_per_epoch": float(history["seconds"].mean()) if len(history) else 0.0,
        "total_seconds": time.perf_counter() - t_start,
        "loss_tile": int(config.block_size or _auto_tile(2 * max(b - a for a, b in plan.segments), dev)),
        "peak_rss_mb": _peak_rss_mb(),
    }
    if labels is not None:
        info["n_pseudo_clusters"] = int(len(np.unique(labels)))
    if dev.type == "cuda":
        info["cuda_max_memory_allocated_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return FitResult(embedding=emb, history=history, state_dict=state, info=info)


def _peak_rss_mb() -> float:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except Exception:  # pragma: no cover - non-POSIX
        return float("nan")


def config_dict(config: StaigConfig) -> dict[str, Any]:
    return asdict(config)


register(MethodSpec(
    name="staig",
    config_class=StaigConfig,
    fit=fit_staig,
    prep=STAIG_PREP,
    prep_multi=STAIG_PREP_MULTI,
    description="STAIG: graph contrastive learning with image-guided edge dropping (Yang et al. 2025)",
))
