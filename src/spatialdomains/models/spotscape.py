"""Spotscape: Similarity Telescope + prototypical contrast + similarity scaling (Oh et al., ICML 2025).

Clean-room implementation of ``shared/spec/algorithms.md`` Part B with the scalable forms of Part D3:

* **Relation consistency** (the Similarity Telescope, B5.1) uses the exact closed form
  ``L_sc = (2/B^2) [tr(G1 G2) - tr(C C)]`` with ``G_v = Zv^T Zv`` and ``C = Z2^T Z1`` of the
  row-normalised embeddings: O(B d^2) time and O(d^2) memory instead of the B x B matrix.
* **Reconstruction** (B5.2) is the MSE of the decoder output against the un-masked features. The
  decoder ends in a linear layer ``X_hat = H W^T + b``, so
  ``||X_hat - X||^2 = <H^T H, W^T W> + 2 (1^T H) W^T b + B ||b||^2 - 2 <H, X W> - 2 b^T X^T 1 + ||X||^2``
  exactly: the B x G output is never formed (``method="gram"``). ``method="chunked"`` computes the
  same sum over checkpointed row chunks and is the reference the tests compare against.
* **Prototypical contrastive loss** (B5.3): k-means prototypes of view 2 at three granularities,
  recomputed every step, cosine scoring of view 1 with temperature 0.75.
* **Similarity scaling** (B5.4), variant "per ordered slice pair over the anchor's rows": top-k
  indices are found without gradients in row blocks, then only the selected similarities are
  recomputed with gradients (gather + dot). No B x B matrix ever exists.

Large data: full batch while the memory estimate fits, otherwise mini-batches of spatially compact
seed sets (graph Voronoi parts) with their 2-hop induced subgraph and globally normalised edge
weights, so the 2-layer GCN output of every seed equals its full-graph value.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.nn.inits import glorot, zeros
from torch_geometric.utils import dropout_edge

from .. import _logging as logg
from .._constants import SLICE_KEY, SPATIAL_CONN
from .._utils import InputError, seed_everything
from . import MethodSpec, register
from ._base import FitResult

__all__ = [
    "SpotscapeConfig",
    "GCNLayer",
    "SpotscapeEncoder",
    "SpotscapeDecoder",
    "Spotscape",
    "mask_feature_columns",
    "relation_consistency_loss",
    "reconstruction_loss",
    "prototypical_contrastive_loss",
    "kmeans_prototypes",
    "pcl_granularities",
    "similarity_scaling_loss",
    "fit_spotscape",
    "estimate_memory",
]


# ---------------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpotscapeConfig:
    """Hyperparameters of Spotscape. Defaults follow the reference code / paper Table 2 (spec E2).

    ``lr=None`` picks the spec's DLPFC values: 1e-4 for one slice, 5e-4 for several (integration).
    ``batch_mode``: ``"auto"`` trains full batch while the memory estimate (logged before training)
    fits the budget, else mini-batches; ``"full"`` / ``"minibatch"`` force a mode.
    ``use_sc`` / ``use_pcl`` / ``use_ss`` switch single loss terms off for ablations.
    """

    hidden_channels: int = 256  #: encoder [G, 256, 64]
    out_channels: int = 64
    decoder_hidden: int = 256  #: decoder [64, 256, G]
    bn_momentum: float = 0.99  #: encoder BatchNorm momentum (PyTorch convention; reference value)
    edge_drop: tuple[float, float] = (0.2, 0.2)  #: directed edge dropout per view
    feature_mask: tuple[float, float] = (0.2, 0.2)  #: gene-column masking per view
    lambda_re: float = 0.1
    lambda_sc: float = 1.0
    lambda_pcl: float = 0.01
    lambda_ss: float = 1.0
    pcl_tau: float = 0.75
    granularities: tuple[float, ...] = (1.0, 1.5, 2.0)  #: prototype counts = these x n_domains
    pcl_warmup: int = 500  #: PCL starts at this epoch (capped at epochs // 2)
    kmeans_iter: int = 20
    kmeans_points_per_centroid: int = 256  #: k-means subsample, as faiss does
    ss_top_k: int = 5
    epochs: int = 1000
    lr: float | None = None  #: None: 1e-4 single slice, 5e-4 several slices
    weight_decay: float = 1e-4
    batch_mode: str = "auto"  #: auto | full | minibatch
    batch_size: int = 4096  #: seed spots per mini-batch
    memory_budget_gb: float | None = None  #: auto mode budget; None: 60% of free RAM / 80% of free GPU
    use_sc: bool = True
    use_pcl: bool = True
    use_ss: bool = True
    sparse_input: str = "auto"  #: auto | always | never: sparse X when density < 5%
    impute: bool = True  #: return the decoder output on the full graph in ``extras['imputed']``
    #: auto | float32 | bfloat16: dtype of the N x G feature products in training (fp32 accumulation);
    #: auto = bfloat16 where the hardware has native bfloat16 matmul (CUDA with bf16, x86 avx512_bf16 /
    #: amx_bf16), float32 elsewhere, where emulated bfloat16 would be slower
    precision: str = "auto"

    def learning_rate(self, n_slices: int) -> float:
        if self.lr is not None:
            return float(self.lr)
        return 1e-4 if n_slices <= 1 else 5e-4


# ---------------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------------
class GCNLayer(MessagePassing):
    r"""Graph convolution :math:`\hat{A} X W + b` (Kipf & Welling, https://arxiv.org/abs/1609.02907).

    :math:`\hat{A} = \tilde{D}^{-1/2}(A + I)\tilde{D}^{-1/2}` as in PyG ``GCNConv`` (missing self loops
    are added with weight 1). The projection ``X W`` may be passed precomputed as ``xw`` so that the
    caller can batch several products with a sparse ``X`` into one.

    Args:
        in_channels: input features.
        out_channels: output features.

    Shapes:
        input ``x`` :math:`(|V|, F_{in})` (dense or sparse) or ``xw`` :math:`(|V|, F_{out})`,
        ``edge_index`` :math:`(2, |E|)`, optional normalised ``edge_weight`` :math:`(|E|)`;
        output :math:`(|V|, F_{out})`.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(aggr="add")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"GCNLayer: channels must be positive, got {in_channels}, {out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        glorot(self.weight)
        zeros(self.bias)

    def forward(self, x: Tensor | None, edge_index: Tensor, edge_weight: Tensor | None = None, *,
                xw: Tensor | None = None, normalized: bool = False) -> Tensor:
        if xw is None:
            xw = x @ self.weight
        if not normalized:
            edge_index, edge_weight = gcn_norm(edge_index, edge_weight, xw.size(0), add_self_loops=True)
        out = self.propagate(edge_index, x=xw, edge_weight=edge_weight)
        return out + self.bias

    def message(self, x_j: Tensor, edge_weight: Tensor | None) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels})"


class SpotscapeEncoder(nn.Module):
    """Two GCN layers, each followed by BatchNorm and ReLU (spec B3); the output is non-negative."""

    def __init__(self, in_channels: int, hidden_channels: int = 256, out_channels: int = 64,
                 bn_momentum: float = 0.99):
        super().__init__()
        self.in_channels, self.hidden_channels, self.out_channels = in_channels, hidden_channels, out_channels
        self.conv1 = GCNLayer(in_channels, hidden_channels)
        self.bn1 = nn.BatchNorm1d(hidden_channels, momentum=bn_momentum)
        self.conv2 = GCNLayer(hidden_channels, out_channels)
        self.bn2 = nn.BatchNorm1d(out_channels, momentum=bn_momentum)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in (self.conv1, self.bn1, self.conv2, self.bn2):
            module.reset_parameters()

    def forward(self, x: Tensor | None, edge_index: Tensor, edge_weight: Tensor | None = None, *,
                xw: Tensor | None = None, normalized: bool = False) -> Tensor:
        """Embedding ``z`` of every node. ``xw`` = ``x @ conv1.weight`` when precomputed."""
        if not normalized:
            n = xw.size(0) if xw is not None else x.size(0)
            edge_index, edge_weight = gcn_norm(edge_index, edge_weight, n, add_self_loops=True)
        h = self.conv1(x, edge_index, edge_weight, xw=xw, normalized=True)
        h = F.relu(self.bn1(h))
        h = self.conv2(h, edge_index, edge_weight, normalized=True)
        return F.relu(self.bn2(h))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.hidden_channels}, {self.out_channels})"


class SpotscapeDecoder(nn.Module):
    """MLP ``Linear(64, 256) -> BN -> ReLU -> Linear(256, G)``, no output activation (spec B3)."""

    def __init__(self, in_channels: int = 64, hidden_channels: int = 256, out_channels: int = 1):
        super().__init__()
        self.in_channels, self.hidden_channels, self.out_channels = in_channels, hidden_channels, out_channels
        self.lin1 = nn.Linear(in_channels, hidden_channels)
        self.bn = nn.BatchNorm1d(hidden_channels)
        self.lin2 = nn.Linear(hidden_channels, out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in (self.lin1, self.bn, self.lin2):
            module.reset_parameters()

    def hidden(self, z: Tensor) -> Tensor:
        """The input of the last linear layer, ``H`` with ``X_hat = H W^T + b``."""
        return F.relu(self.bn(self.lin1(z)))

    def forward(self, z: Tensor) -> Tensor:
        return self.lin2(self.hidden(z))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.hidden_channels}, {self.out_channels})"


class Spotscape(nn.Module):
    """Encoder + decoder. ``forward`` returns the embedding; ``decode`` the reconstructed features."""

    def __init__(self, encoder: SpotscapeEncoder, decoder: SpotscapeDecoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def reset_parameters(self) -> None:
        self.encoder.reset_parameters()
        self.decoder.reset_parameters()

    def forward(self, x: Tensor | None, edge_index: Tensor, edge_weight: Tensor | None = None, **kwargs) -> Tensor:
        return self.encoder(x, edge_index, edge_weight, **kwargs)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)


# ---------------------------------------------------------------------------------------------------
# augmentations (stateless)
# ---------------------------------------------------------------------------------------------------
def mask_feature_columns(num_features: int, p: float, *, training: bool = True,
                         device: torch.device | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Keep-mask (float 0/1, shape ``(num_features,)``) zeroing each column with probability ``p``.

    The same columns are masked for every spot (spec B4). ``x * mask`` equals ``x @ diag(mask)``, so the
    mask can be applied to the rows of the first weight matrix instead of copying ``x``.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"mask_feature_columns: p must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return torch.ones(num_features, device=device)
    return (torch.rand(num_features, device=device, generator=generator) >= p).float()


def drop_edges(edge_index: Tensor, p: float, *, training: bool = True) -> tuple[Tensor, Tensor]:
    """Directed edge dropout (PyG ``dropout_edge``, not forced undirected); returns ``(edge_index, kept mask)``."""
    return dropout_edge(edge_index, p=p, force_undirected=False, training=training)


# ---------------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------------
def relation_consistency_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """Similarity Telescope ``MSE(S, S^T)`` with ``S = norm(z1) norm(z2)^T``, by the exact closed form.

    ``(1/B^2) ||S - S^T||_F^2 = (2/B^2) [tr(G1 G2) - tr(C C)]`` with ``G_v = Z_v^T Z_v`` and
    ``C = Z_2^T Z_1`` (row-normalised, d x d). Computed in float64 (O(B d^2)), returned in z's dtype.
    """
    if z1.shape != z2.shape:
        raise ValueError(f"relation_consistency_loss: shapes differ {tuple(z1.shape)} vs {tuple(z2.shape)}")
    b = z1.size(0)
    a1 = F.normalize(z1, dim=1).double()
    a2 = F.normalize(z2, dim=1).double()
    g1 = a1.T @ a1
    g2 = a2.T @ a2
    c = a2.T @ a1
    value = 2.0 * ((g1 * g2).sum() - (c * c.T).sum()) / (b * b)
    return value.to(z1.dtype)


def reconstruction_loss(h: Tensor | Sequence[Tensor], weight: Tensor, bias: Tensor | None, x: Tensor | None = None, *,
                        xw: Tensor | None = None, x_sq_sum: Tensor | float | None = None,
                        x_col_sum: Tensor | None = None, method: str = "gram", chunk_size: int = 1024) -> Tensor:
    """Mean squared error between ``h @ weight.T + bias`` (B x G) and the target ``x``.

    ``h`` may be a list of views (each B x H) sharing the target; the result is then the mean over
    views. ``method="gram"`` (default) never forms the B x G prediction:
    ``||H W^T + 1 b^T - X||^2 = <H^T H, W^T W> + 2 (1^T H) W^T b + B ||b||^2 - 2 <H, X W> - 2 b^T X^T 1 + ||X||^2``.
    It needs ``xw = x @ weight`` (B x H), ``x_sq_sum = ||x||^2`` and ``x_col_sum = 1^T x`` (each
    computed from ``x`` when omitted); the products run in ``h``'s dtype, the reductions in float64.
    ``method="chunked"`` sums the squared error over row chunks under activation checkpointing, so at
    most ``chunk_size x G`` prediction values exist at once. Both equal the dense MSE.
    """
    hs = [h] if isinstance(h, Tensor) else list(h)
    n_views = len(hs)
    b, g = hs[0].size(0), weight.size(0)
    f64 = torch.float64
    if method == "chunked":
        if x is None:
            raise ValueError("reconstruction_loss(method='chunked') needs x")
        from torch.utils.checkpoint import checkpoint

        def part(hc: Tensor, xc: Tensor) -> Tensor:
            pred = hc @ weight.T
            if bias is not None:
                pred = pred + bias
            target = xc.to_dense() if xc.layout != torch.strided else xc
            return ((pred - target) ** 2).sum(dtype=f64)

        total = hs[0].new_zeros((), dtype=f64)
        for hv in hs:
            for start in range(0, b, chunk_size):
                hc = hv[start:start + chunk_size]
                xc = _rows(x, start, start + chunk_size)
                total = total + (checkpoint(part, hc, xc, use_reentrant=False) if torch.is_grad_enabled()
                                 else part(hc, xc))
        return (total / (n_views * b * g)).to(hs[0].dtype)
    if method != "gram":
        raise ValueError(f"reconstruction_loss: unknown method {method!r}; use 'gram' or 'chunked'")
    if xw is None or x_sq_sum is None or (bias is not None and x_col_sum is None):
        if x is None:
            raise ValueError("reconstruction_loss(method='gram') needs x or (xw, x_sq_sum, x_col_sum)")
        if xw is None:
            xw = x @ weight
        xd = x.to_dense() if x.layout != torch.strided else x
        if x_sq_sum is None:
            x_sq_sum = (xd.to(f64) ** 2).sum()
        if x_col_sum is None:
            x_col_sum = xd.to(f64).sum(0)
    gram_h = sum(hv.T @ hv for hv in hs)
    h_sum = hs[0] if n_views == 1 else sum(hs)
    pred_sq = (gram_h * (weight.T @ weight)).sum(dtype=f64)
    cross = (h_sum * xw).sum(dtype=f64)
    if bias is not None:
        pred_sq = pred_sq + 2.0 * (h_sum.sum(0) @ (weight.T @ bias)).to(f64) + n_views * b * (bias * bias).sum(dtype=f64)
        cross = cross + n_views * (bias.to(f64) * torch.as_tensor(x_col_sum, device=bias.device).to(f64)).sum()
    total = pred_sq - 2.0 * cross + n_views * torch.as_tensor(x_sq_sum, dtype=f64, device=hs[0].device)
    return (total / (n_views * b * g)).to(hs[0].dtype)


def _rows(x: Tensor, start: int, stop: int) -> Tensor:
    if x.layout == torch.sparse_csr:
        return _csr_row_slice(x, start, stop)
    if x.layout != torch.strided:
        return x.to_dense()[start:stop]
    return x[start:stop]


def _csr_row_slice(x: Tensor, start: int, stop: int) -> Tensor:
    crow = x.crow_indices()
    stop = min(stop, x.size(0))
    lo, hi = int(crow[start]), int(crow[stop])
    return torch.sparse_csr_tensor(crow[start:stop + 1] - lo, x.col_indices()[lo:hi], x.values()[lo:hi],
                                   size=(stop - start, x.size(1))).to_dense()


def pcl_granularities(n_domains: int, multipliers: Sequence[float] = (1.0, 1.5, 2.0), n_points: int | None = None
                      ) -> list[int]:
    """Prototype counts ``K_1 = floor(m_1 k)``, ``K_m = max(K_{m-1} + 1, ceil(m k))`` (7, 11, 14 for k=7)."""
    ks: list[int] = []
    for i, mult in enumerate(multipliers):
        k = max(1, int(math.floor(mult * n_domains))) if i == 0 else max(ks[-1] + 1, int(math.ceil(mult * n_domains)))
        ks.append(k)
    if n_points is not None:
        ks = [min(k, n_points) for k in ks]
    return ks


@torch.no_grad()
def kmeans_prototypes(z: Tensor, n_clusters: int, *, n_iter: int = 20, max_points_per_centroid: int = 256,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Lloyd k-means on (a subsample of) ``z``; returns ``(centroids (K, d), labels of all rows (N,))``.

    Mirrors faiss' defaults used by the reference: random initial centroids from the training points,
    ``n_iter`` iterations, at most ``max_points_per_centroid * K`` training points (a random subsample),
    an empty cluster takes half of the largest one (its centroid is split). Every row is then assigned
    to its nearest centroid (squared Euclidean, un-normalised).
    """
    z = z.detach().float()
    n = z.size(0)
    k = max(1, min(int(n_clusters), n))
    dev = z.device
    if n > max_points_per_centroid * k:
        sample = z[torch.randperm(n, generator=generator, device="cpu")[: max_points_per_centroid * k].to(dev)]
    else:
        sample = z
    m = sample.size(0)
    centroids = sample[torch.randperm(m, generator=generator, device="cpu")[:k].to(dev)].clone()
    sample_sq = (sample * sample).sum(1, keepdim=True)
    for _ in range(n_iter):
        dist = sample_sq - 2.0 * sample @ centroids.T + (centroids * centroids).sum(1)
        assign = dist.argmin(1)
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, assign, sample)
        nonempty = counts > 0
        centroids[nonempty] = sums[nonempty] / counts[nonempty].unsqueeze(1).float()
        for empty in torch.nonzero(~nonempty).flatten().tolist():
            big = int(torch.argmax(counts))
            centroids[empty] = centroids[big] * (1 + 1e-3)
            centroids[big] = centroids[big] * (1 - 1e-3)
            counts[empty] = counts[big] // 2
            counts[big] -= counts[empty]
    dist = (z * z).sum(1, keepdim=True) - 2.0 * z @ centroids.T + (centroids * centroids).sum(1)
    return centroids, dist.argmin(1)


def prototypical_contrastive_loss(z: Tensor, centroids: Sequence[Tensor], labels: Sequence[Tensor],
                                  tau: float = 0.75) -> Tensor:
    """Mean over rows and granularities of ``-log softmax_q(cos(z_i, c_q) / tau)[y_i]`` (spec B5.3).

    ``centroids[m]`` (K_m x d, un-normalised, treated as constants) and ``labels[m]`` (N,) come from
    :func:`kmeans_prototypes` on the other view.
    """
    if len(centroids) != len(labels) or not centroids:
        raise ValueError("prototypical_contrastive_loss: need one label vector per centroid set")
    zn = F.normalize(z, dim=1)
    total = z.new_zeros(())
    for c, y in zip(centroids, labels):
        logits = zn @ F.normalize(c.detach(), dim=1).T / tau
        total = total + F.cross_entropy(logits, y)
    return total / len(centroids)


def _block_rows(n_cols: int, block_elems: int) -> int:
    return max(1, block_elems // max(n_cols, 1))


def similarity_scaling_loss(z1: Tensor, z2: Tensor, slice_ids: Tensor, *, top_k: int = 5,
                            block_elems: int = 1 << 22) -> Tensor:
    """Similarity scaling over ordered slice pairs, anchored on the rows of the first slice (spec B5.4).

    With ``S = norm(z1) norm(z2)^T``: for each ordered pair ``(a, b)``, ``a != b``, and each spot ``i``
    of slice ``a``, ``in_i`` is the mean of the top-``k`` of ``S[i, j in a]`` (the diagonal included)
    and ``out_i`` the mean of the top-``k`` of ``S[i, j in b]``;
    ``L = sum_(a,b) mean_{i in a} (in_i - out_i)^2``. With two equal slices this is the reference's
    default variant exactly. Top-k indices are searched without gradients in row blocks of at most
    ``block_elems`` similarities; the selected entries are then recomputed with gradients. A slice with
    fewer than ``k`` spots uses all of them.
    """
    slice_ids = torch.as_tensor(slice_ids, device=z1.device)
    values = torch.unique(slice_ids)
    if values.numel() < 2:
        return z1.new_zeros(())
    a1 = F.normalize(z1, dim=1)
    a2 = F.normalize(z2, dim=1)
    members = [torch.nonzero(slice_ids == v).flatten() for v in values]
    # top-k means with gradients: means[a][c] = (n_a,) mean of top-k of S[rows a, cols c]
    means: list[list[Tensor]] = []
    for rows in members:
        row_means = []
        q = a1[rows]
        qd = q.detach()
        for cols in members:
            k = min(top_k, cols.numel())
            keys = a2.detach()[cols]
            idx = torch.empty(rows.numel(), k, dtype=torch.long, device=z1.device)
            step = _block_rows(cols.numel(), block_elems)
            with torch.no_grad():
                for s in range(0, rows.numel(), step):
                    idx[s:s + step] = (qd[s:s + step] @ keys.T).topk(k, dim=1).indices
            sel = a2[cols[idx]]  # (n_a, k, d), with gradients
            row_means.append((q.unsqueeze(1) * sel).sum(-1).mean(1))
        means.append(row_means)
    total = z1.new_zeros(())
    for ia in range(len(members)):
        for ib in range(len(members)):
            if ia != ib:
                total = total + ((means[ia][ia] - means[ia][ib]) ** 2).mean()
    return total


# ---------------------------------------------------------------------------------------------------
# features: dense or sparse X with a fast transposed product for the backward pass
# ---------------------------------------------------------------------------------------------------
class _SparseProject(torch.autograd.Function):
    """``X @ W`` for a constant sparse CSR ``X``; the backward uses the precomputed CSR of ``X^T``."""

    @staticmethod
    def forward(ctx, x: Tensor, xt: Tensor, w: Tensor) -> Tensor:  # type: ignore[override]
        ctx.xt = xt
        return x @ w

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return None, None, ctx.xt @ grad


class _LowPrecisionProject(torch.autograd.Function):
    """``X @ W`` with a constant bfloat16 ``X``: both products in bfloat16 (fp32 accumulation), fp32 out."""

    @staticmethod
    def forward(ctx, xb: Tensor, w: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(xb)
        return (xb @ w.to(xb.dtype)).float()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (xb,) = ctx.saved_tensors
        return None, (xb.T @ grad.to(xb.dtype)).float()


def _to_torch_csr(m: sp.csr_matrix, device) -> Tensor:
    m = sp.csr_matrix(m, dtype=np.float32)
    m.sort_indices()
    index_dtype = np.int32 if m.nnz < 2**31 - 1 else np.int64
    return torch.sparse_csr_tensor(torch.from_numpy(m.indptr.astype(index_dtype)),
                                   torch.from_numpy(m.indices.astype(index_dtype)),
                                   torch.from_numpy(m.data), size=m.shape).to(device)


class _Features:
    """The (row subset of the) feature matrix on the device, with the constants the losses need."""

    def __init__(self, x, device, sparse: bool, low_precision: bool = False):
        self.sparse = sparse
        self.device = device
        self.xb = None
        if sparse:
            m = sp.csr_matrix(x, dtype=np.float32)
            self.x = _to_torch_csr(m, device)
            self.xt = _to_torch_csr(m.T.tocsr(), device)
            self.n_rows, self.n_cols = m.shape
        else:
            arr = x.toarray() if sp.issparse(x) else np.asarray(x)
            self.x = torch.as_tensor(np.ascontiguousarray(arr, dtype=np.float32), device=device)
            self.n_rows, self.n_cols = arr.shape
            # X^T (contiguous) makes the per-view gather of masked gene columns a fast row gather
            self.xt = self.x.T.contiguous()
            if low_precision:
                self.xb = self.x.to(torch.bfloat16)
                self.xt = self.xt.to(torch.bfloat16)

    def project(self, w: Tensor) -> Tensor:
        """``X @ w`` (differentiable in ``w``)."""
        if self.sparse:
            if torch.is_grad_enabled() and w.requires_grad:
                return _SparseProject.apply(self.x, self.xt, w)
            return self.x @ w
        if self.xb is not None and torch.is_grad_enabled():
            return _LowPrecisionProject.apply(self.xb, w)
        return self.x @ w

    def project_columns(self, cols: Tensor, w_rows: Tensor) -> Tensor:
        """``X[:, cols] @ w_rows`` (dense features only)."""
        sub = self.xt[cols].T
        if self.xb is not None:
            return _LowPrecisionProject.apply(sub, w_rows) if torch.is_grad_enabled() else sub.float() @ w_rows
        return sub @ w_rows

    def stats(self, n_rows: int) -> tuple[Tensor, Tensor]:
        """``(||X[:n]||^2, 1^T X[:n])`` in float64."""
        if self.sparse:
            crow = self.x.crow_indices()
            hi = int(crow[n_rows])
            vals = self.x.values()[:hi].double()
            cols = self.x.col_indices()[:hi].long()
            col_sum = torch.zeros(self.n_cols, dtype=torch.float64, device=self.device).index_add_(0, cols, vals)
            return (vals * vals).sum(), col_sum
        xd = self.x[:n_rows].double()
        return (xd * xd).sum(), xd.sum(0)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 natively (CUDA with bf16; x86 with avx512_bf16 or amx_bf16)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:  # Linux; elsewhere (macOS, Windows) stay in float32
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bfloat16 where :func:`native_bf16`, else float32; explicit values are checked and kept."""
    if precision not in ("auto", "float32", "bfloat16"):
        raise InputError(f"precision must be auto, float32 or bfloat16, got {precision!r}")
    if precision == "auto":
        return "bfloat16" if native_bf16(device) else "float32"
    return precision


def _choose_sparse(x, mode: str) -> bool:
    if mode == "always":
        return True
    if mode == "never":
        return False
    if mode != "auto":
        raise InputError(f"sparse_input must be auto, always or never, got {mode!r}")
    n = x.shape[0] * x.shape[1]
    if n == 0:
        return False
    nnz = x.nnz if sp.issparse(x) else int(np.count_nonzero(x[: min(x.shape[0], 20000)])) * x.shape[0] / min(
        x.shape[0], 20000)
    # measured on a 2-core AVX-512 CPU: torch CSR x dense only beats dense GEMM below ~5% non-zeros
    return nnz / n < 0.05


# ---------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------
def estimate_memory(n_spots: int, n_genes: int, config: SpotscapeConfig = SpotscapeConfig(), *,
                    density: float = 1.0, sparse: bool = False, n_edges: int | None = None) -> dict[str, float]:
    """Bytes needed to train on ``n_spots`` spots at once (full batch), by component.

    Activations: per view the encoder keeps ~4 tensors of width ``hidden`` and ~4 of width ``out``,
    the decoder ~3 of width ``decoder_hidden`` (kept for backward, plus gradients of the same size);
    the packed projection of X is ``N x (2 hidden + decoder_hidden)``; similarity scaling gathers
    ``N x k x d``. X is dense float32 or CSR (X and X^T).
    """
    c = config
    n = float(n_spots)
    edges = float(n_edges if n_edges is not None else 8 * n_spots)
    if sparse:
        x_bytes = 2 * density * n * n_genes * 8 + 2 * 4 * n
    else:
        x_bytes = 2 * n * n_genes * 4  # X and X^T (float32; bfloat16 copies add the same again at half size)
    per_view = 2 * 4 * n * (4 * c.hidden_channels + 4 * c.out_channels + 3 * c.decoder_hidden)
    packed = 2 * 4 * n * (2 * c.hidden_channels + c.decoder_hidden)
    graph = 2 * edges * (16 + 4 + 4 * c.hidden_channels)  # indices, weights, messages per view
    ss = 2 * 4 * n * c.ss_top_k * c.out_channels + 4 * (1 << 24)
    params = 4 * 4 * (n_genes * (c.hidden_channels + c.decoder_hidden))  # weights, grads, Adam moments
    total = x_bytes + 2 * per_view + packed + graph + ss + params
    return {"x": x_bytes, "activations": 2 * per_view + packed + ss, "graph": graph, "parameters": params,
            "total": total}


def _memory_budget(config: SpotscapeConfig, device: torch.device) -> float:
    if config.memory_budget_gb is not None:
        return config.memory_budget_gb * 1e9
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return 0.8 * free
    try:
        import psutil

        return 0.6 * psutil.virtual_memory().available
    except ImportError:  # pragma: no cover
        return 8e9


def _slice_codes(adata) -> tuple[np.ndarray, list[str]]:
    if SLICE_KEY not in adata.obs:
        return np.zeros(adata.n_obs, dtype=np.int64), ["0"]
    cat = adata.obs[SLICE_KEY].astype("category")
    return cat.cat.codes.to_numpy().astype(np.int64), [str(c) for c in cat.cat.categories]


def _graph_csr(adata) -> sp.csr_matrix:
    if SPATIAL_CONN not in adata.obsp:
        raise InputError(f"obsp['{SPATIAL_CONN}'] is missing: run spatialdomains.pp.prepare_group (or "
                         "graph.spatial_graph) before training Spotscape")
    a = sp.csr_matrix(adata.obsp[SPATIAL_CONN])
    a = a.tolil()
    a.setdiag(0)
    a = a.tocsr()
    a.eliminate_zeros()
    a.data[:] = 1.0
    a.sort_indices()
    return a


def _validate(adata) -> None:
    if adata.n_obs < 3:
        raise InputError(f"Spotscape needs at least 3 spots, got {adata.n_obs}")
    if adata.n_vars < 1:
        raise InputError("Spotscape needs at least one feature in X")
    x = adata.X
    data = x.data if sp.issparse(x) else np.asarray(x)
    if not np.isfinite(data).all():
        raise InputError("X holds NaN/inf values: prepare the group from raw counts (pp.prepare_group)")


def _estimate_n_domains(z: np.ndarray, seed: int, candidates: Sequence[int] = range(4, 16)) -> int:
    """K in ``candidates`` with the best silhouette of k-means on the embedding (subsampled)."""
    from ..cluster import choose_n_clusters

    ks = [k for k in candidates if k < z.shape[0]]
    k, _ = choose_n_clusters(z, ks, method="kmeans", seed=seed, max_n=5000)
    return int(k)


class _Partition:
    """Spatially compact parts of the graph (graph Voronoi cells of random centres, by hop distance)."""

    def __init__(self, adj: sp.csr_matrix, part_size: int, rng: np.random.Generator):
        from scipy.sparse.csgraph import dijkstra

        n = adj.shape[0]
        n_parts = max(1, int(math.ceil(n / max(part_size, 1))))
        centres = rng.choice(n, n_parts, replace=False)
        _, _, sources = dijkstra(adj, directed=False, indices=centres, unweighted=True, min_only=True,
                                 return_predecessors=True)
        owner = np.full(n, -1, dtype=np.int64)
        owner[centres] = np.arange(n_parts)
        reached = sources >= 0
        lookup = np.full(n, -1, dtype=np.int64)
        lookup[centres] = np.arange(n_parts)
        owner[reached] = lookup[sources[reached]]
        lost = owner < 0
        owner[lost] = rng.integers(0, n_parts, int(lost.sum()))
        order = np.argsort(owner, kind="stable")
        bounds = np.searchsorted(owner[order], np.arange(n_parts + 1))
        self.parts = [order[bounds[i]:bounds[i + 1]] for i in range(n_parts) if bounds[i + 1] > bounds[i]]
        self.n = n

    def batches(self, n_batches: int, gen: torch.Generator) -> list[np.ndarray]:
        """Shuffle the parts and cut them into ``n_batches`` groups of about equal size."""
        perm = torch.randperm(len(self.parts), generator=gen).numpy()
        sizes = np.array([len(self.parts[i]) for i in perm])
        cuts = np.searchsorted(np.cumsum(sizes), np.linspace(0, self.n, n_batches + 1)[1:-1], side="left") + 1
        groups = np.split(perm, cuts)
        return [np.concatenate([self.parts[i] for i in g]) for g in groups if len(g)]


def _khop(adj: sp.csr_matrix, seeds: np.ndarray, hops: int) -> np.ndarray:
    """Seeds first, then the nodes within ``hops`` hops (CSR slicing, O(sum of degrees))."""
    n = adj.shape[0]
    seen = np.zeros(n, dtype=bool)
    seen[seeds] = True
    order = [seeds]
    frontier = seeds
    indptr, indices = adj.indptr, adj.indices
    for _ in range(hops):
        starts, stops = indptr[frontier], indptr[frontier + 1]
        lengths = stops - starts
        if lengths.sum() == 0:
            break
        pos = np.repeat(stops - np.cumsum(lengths), lengths) + np.arange(lengths.sum())
        nbrs = np.unique(indices[pos])
        new = nbrs[~seen[nbrs]]
        seen[new] = True
        order.append(new)
        frontier = new
    return np.concatenate(order)


class _GraphViews:
    """Per-epoch edge dropout on the whole graph with globally normalised GCN weights.

    Edges are stored by target (CSR rows = targets) so a subgraph's incoming edges are row slices.
    """

    def __init__(self, adj: sp.csr_matrix, device):
        # CSR over targets: row index = target, column = source (the graph is symmetric anyway)
        t = sp.csr_matrix(adj.T)
        t.sort_indices()
        self.indptr = t.indptr
        self.src = t.indices.astype(np.int64)
        self.dst = np.repeat(np.arange(adj.shape[0], dtype=np.int64), np.diff(t.indptr))
        self.n = adj.shape[0]
        self.device = device
        self.edge_index = torch.as_tensor(np.stack([self.src, self.dst]), device=device)
        self.weights: list[Tensor] = []
        self.self_weights: list[Tensor] = []

    def resample(self, drops: Sequence[float]) -> None:
        self.weights, self.self_weights = [], []
        for p in drops:
            _, keep = drop_edges(self.edge_index, p)
            kept = keep.float()
            deg = torch.ones(self.n, device=self.device).index_add_(0, self.edge_index[1], kept)
            dis = deg.pow(-0.5)
            self.weights.append(kept * dis[self.edge_index[0]] * dis[self.edge_index[1]])
            self.self_weights.append(1.0 / deg)

    def subgraph(self, nodes: np.ndarray) -> tuple[Tensor, Tensor, list[tuple[Tensor, Tensor]]]:
        """Local ``edge_index`` (induced, with self loops) and per-view weights for ``nodes``."""
        local = np.full(self.n, -1, dtype=np.int64)
        local[nodes] = np.arange(nodes.size)
        starts, stops = self.indptr[nodes], self.indptr[nodes + 1]
        lengths = stops - starts
        pos = np.repeat(stops - np.cumsum(lengths), lengths) + np.arange(lengths.sum())
        src_local = local[self.src[pos]]
        inside = src_local >= 0
        pos = pos[inside]
        ei = np.stack([src_local[inside], local[self.dst[pos]]])
        loops = np.arange(nodes.size, dtype=np.int64)
        ei = torch.as_tensor(np.concatenate([ei, np.stack([loops, loops])], axis=1), device=self.device)
        pos_t = torch.as_tensor(pos, device=self.device)
        nodes_t = torch.as_tensor(nodes, device=self.device)
        views = [(ei, torch.cat([w[pos_t], s[nodes_t]])) for w, s in zip(self.weights, self.self_weights)]
        return ei, nodes_t, views


def _step_losses(model: Spotscape, feats: _Features, views: Sequence[tuple[Tensor, Tensor]], n_seed: int,
                 seed_slices: Tensor, config: SpotscapeConfig, *, pcl_on: bool, n_domains: int | None,
                 stats: tuple[Tensor, Tensor], multi_slice: bool) -> dict[str, Tensor]:
    """All loss terms for one (sub)graph whose first ``n_seed`` rows are the seeds."""
    enc, dec = model.encoder, model.decoder
    w1 = enc.conv1.weight
    wd = dec.lin2.weight  # (G, decoder_hidden)
    dev = w1.device
    masks = [mask_feature_columns(feats.n_cols, p, device=dev) for p in config.feature_mask]
    h = enc.hidden_channels
    if feats.sparse:
        # column masks on the rows of W1: X diag(m) W1 = X (m * W1); one packed sparse product
        packed = feats.project(torch.cat([w1 * masks[0].unsqueeze(1), w1 * masks[1].unsqueeze(1), wd], dim=1))
        xw1, xw2, xwd = packed[:, :h], packed[:, h:2 * h], packed[:, 2 * h:]
    else:
        # X diag(m) W1 = X W1 - X[:, dropped] W1[dropped]: the shared product is computed (and
        # back-propagated) once for both views; each view only pays for its ~20% masked columns
        packed = feats.project(torch.cat([w1, wd], dim=1))
        xw, xwd = packed[:, :h], packed[:, h:]
        xws = []
        for m in masks:
            dropped = torch.nonzero(m == 0).flatten()
            xws.append(xw - feats.project_columns(dropped, w1[dropped]) if dropped.numel() else xw)
        xw1, xw2 = xws
    (ei1, ew1), (ei2, ew2) = views
    z1 = enc(None, ei1, ew1, xw=xw1, normalized=True)[:n_seed]
    z2 = enc(None, ei2, ew2, xw=xw2, normalized=True)[:n_seed]
    sq, colsum = stats
    xwd = xwd[:n_seed]
    l_re = reconstruction_loss([dec.hidden(z1), dec.hidden(z2)], wd, dec.lin2.bias, xw=xwd, x_sq_sum=sq,
                               x_col_sum=colsum)
    zero = z1.new_zeros(())
    l_sc = relation_consistency_loss(z1, z2) if config.use_sc else zero
    l_ss = zero
    l_pcl = zero
    if multi_slice and config.use_ss:
        l_ss = similarity_scaling_loss(z1, z2, seed_slices, top_k=config.ss_top_k)
    if multi_slice and config.use_pcl and pcl_on and n_domains:
        ks = pcl_granularities(n_domains, config.granularities, n_points=n_seed)
        protos = [kmeans_prototypes(z2, k, n_iter=config.kmeans_iter,
                                    max_points_per_centroid=config.kmeans_points_per_centroid) for k in ks]
        l_pcl = prototypical_contrastive_loss(z1, [c for c, _ in protos], [y for _, y in protos], config.pcl_tau)
    loss = (config.lambda_re * l_re + config.lambda_sc * l_sc + config.lambda_ss * l_ss
            + config.lambda_pcl * l_pcl)
    return {"loss": loss, "re": l_re.detach(), "sc": l_sc.detach(), "ss": l_ss.detach(), "pcl": l_pcl.detach()}


@torch.no_grad()
def _embed(model: Spotscape, feats: _Features, edge_index: Tensor, chunk: int = 65536) -> Tensor:
    """Encoder output in eval mode on the full graph, layer by layer (projection of X in row chunks)."""
    model.eval()
    w1 = model.encoder.conv1.weight
    if feats.sparse:
        xw = feats.x @ w1
    else:
        xw = torch.cat([feats.x[s:s + chunk] @ w1 for s in range(0, feats.n_rows, chunk)])
    return model.encoder(None, edge_index, None, xw=xw)


@torch.no_grad()
def _impute(model: Spotscape, z: Tensor, n_genes: int, chunk_elems: int = 1 << 24) -> np.ndarray:
    model.eval()
    out = np.empty((z.size(0), n_genes), dtype=np.float32)
    step = max(1, chunk_elems // max(n_genes, 1))
    for s in range(0, z.size(0), step):
        out[s:s + step] = model.decode(z[s:s + step]).cpu().numpy()
    return out


def fit_spotscape(adata, *, config: SpotscapeConfig = SpotscapeConfig(), device: str | None = None, seed: int = 0,
                  n_domains: int | None = None, train_options=None) -> FitResult:
    """Train Spotscape on a prepared group and return its embedding (and imputed expression).

    Parameters
    ----------
    adata
        Prepared group (:func:`spatialdomains.pp.prepare_group`): ``X`` log1p HVG features (dense float32
        or sparse), ``obsp['spatial_connectivities']`` and ``obs['slice']`` (one slice when absent).
    config
        :class:`SpotscapeConfig`.
    device
        ``auto``/``None`` (CUDA when present), ``cpu`` or ``cuda[:N]``.
    seed
        Seeds Python, NumPy and torch before the weights are initialised.
    n_domains
        Domain count for the PCL prototypes (several slices only). ``None``: estimated once, when PCL
        starts, as the k-means K in 4..15 with the best silhouette on the current embedding.
    train_options
        :class:`spatialdomains.train.TrainOptions` (checkpoint, resume, progress). Its ``epochs`` is the
        number of epochs; without it ``config.epochs`` is used.

    Returns
    -------
    :class:`FitResult` with ``embedding`` (N x 64 float32), ``history`` (one row per epoch: loss, re, sc,
    ss, pcl, seconds), ``state_dict``, ``extras['imputed']`` (N x G float32 decoder output, when
    ``config.impute``) and ``info`` (device, batch mode, memory estimate, lr, timings).
    """
    from ..train import TrainOptions, resolve_device, run_training

    _validate(adata)
    if config.batch_mode not in ("auto", "full", "minibatch"):
        raise InputError(f"batch_mode must be auto, full or minibatch, got {config.batch_mode!r}")
    dev = resolve_device(device)
    seed_everything(seed)
    adj = _graph_csr(adata)
    codes, slice_names = _slice_codes(adata)
    n_slices = len(np.unique(codes))
    multi = n_slices > 1
    n, g = adata.n_obs, adata.n_vars
    x = adata.X
    sparse = _choose_sparse(x, config.sparse_input)
    precision = resolve_precision(config.precision, dev)  # checked even when X is sparse
    precision = "float32" if sparse else precision  # sparse X is multiplied in float32
    low_precision = precision == "bfloat16"
    density = (x.nnz if sp.issparse(x) else np.count_nonzero(x)) / max(n * g, 1) if sparse else 1.0
    est = estimate_memory(n, g, config, density=density, sparse=sparse, n_edges=adj.nnz + n)
    budget = _memory_budget(config, dev)
    mode = config.batch_mode
    if mode == "auto":
        mode = "full" if est["total"] <= budget else "minibatch"
    options = train_options or TrainOptions(epochs=config.epochs)
    epochs = int(options.epochs)
    warmup = min(config.pcl_warmup, epochs // 2)
    lr = config.learning_rate(n_slices)
    logg.info(f"Spotscape: {n} spots x {g} features, {n_slices} slice(s), {adj.nnz} edges, device {dev}, "
              f"{precision} feature products; "
              f"full-batch memory estimate {est['total'] / 1e9:.2f} GB (X {est['x'] / 1e9:.2f} GB, "
              f"{'sparse' if sparse else 'dense'}) vs budget {budget / 1e9:.2f} GB -> {mode} mode, lr {lr:g}")

    model = Spotscape(SpotscapeEncoder(g, config.hidden_channels, config.out_channels, config.bn_momentum),
                      SpotscapeDecoder(config.out_channels, config.decoder_hidden, g)).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=config.weight_decay, foreach=True)
    state: dict = {"n_domains": n_domains}

    def resolve_k(z2: Tensor) -> int | None:
        if state["n_domains"] is None:
            state["n_domains"] = _estimate_n_domains(z2.detach().cpu().numpy(), seed)
            logg.info(f"Spotscape: n_domains not given; estimated {state['n_domains']} by silhouette")
        return state["n_domains"]

    if mode == "full":
        feats = _Features(x, dev, sparse, low_precision)
        stats = feats.stats(n)
        edge_index = torch.as_tensor(np.stack(adj.nonzero()).astype(np.int64), device=dev)
        slices_t = torch.as_tensor(codes, device=dev)
        steps_per_epoch = 1

        def step(i: int) -> dict:
            views = []
            for p in config.edge_drop:
                ei, _ = drop_edges(edge_index, p)
                views.append(gcn_norm(ei, None, n, add_self_loops=True))
            pcl_on = i >= warmup
            k = None
            if multi and config.use_pcl and pcl_on and state["n_domains"] is None:
                with torch.no_grad():
                    model.eval()
                    k = resolve_k(model.encoder(None, edge_index, None, xw=feats.project(model.encoder.conv1.weight)))
                    model.train()
            return _step_losses(model, feats, views, n, slices_t, config, pcl_on=pcl_on,
                                n_domains=k or state["n_domains"], stats=stats, multi_slice=multi)
    else:
        rng = np.random.default_rng(seed)
        part_size = max(32, config.batch_size // 8)
        partition = _Partition(adj, part_size, rng)
        n_batches = max(1, int(math.ceil(n / config.batch_size)))
        steps_per_epoch = n_batches
        graph_views = _GraphViews(adj, dev)
        xs = sp.csr_matrix(x, dtype=np.float32) if sparse else np.asarray(x, dtype=np.float32)
        gen = torch.Generator().manual_seed(seed)
        codes_t = torch.as_tensor(codes, device=dev)
        cache: dict = {}

        def step(i: int) -> dict:
            epoch, b = divmod(i, n_batches)
            if b == 0 or "batches" not in cache:
                cache["batches"] = partition.batches(n_batches, gen)
                graph_views.resample(config.edge_drop)
            batches = cache["batches"]
            seeds = batches[b % len(batches)]
            nodes = _khop(adj, seeds, 2)
            _, nodes_t, views = graph_views.subgraph(nodes)
            feats_b = _Features(xs[nodes], dev, sparse, low_precision)
            stats_b = feats_b.stats(seeds.size)
            pcl_on = epoch >= warmup
            if multi and config.use_pcl and pcl_on and state["n_domains"] is None:
                with torch.no_grad():
                    model.eval()
                    resolve_k(model.encoder(None, views[0][0], None,
                                            xw=feats_b.project(model.encoder.conv1.weight))[: seeds.size])
                    model.train()
            return _step_losses(model, feats_b, views, seeds.size, codes_t[nodes_t[: seeds.size]], config,
                                pcl_on=pcl_on, n_domains=state["n_domains"], stats=stats_b, multi_slice=multi)

    import resource

    t0 = time.perf_counter()
    c0 = time.process_time()
    run_opts = replace(options, epochs=epochs * steps_per_epoch)
    history = run_training(model, optimizer, step, run_opts, name="spotscape")
    train_seconds = time.perf_counter() - t0
    train_cpu_seconds = time.process_time() - c0
    if steps_per_epoch > 1 and len(history):
        history["epoch"] = history["epoch"] // steps_per_epoch
        agg = {c: "mean" for c in history.columns if c not in ("epoch", "seconds")}
        agg["seconds"] = "sum"
        history = history.groupby("epoch", as_index=False).agg(agg)

    start = logg.info("Spotscape: embedding the full graph")
    full_feats = feats if mode == "full" else _Features(x, dev, sparse)
    full_edges = torch.as_tensor(np.stack(adj.nonzero()).astype(np.int64), device=dev)
    z = _embed(model, full_feats, full_edges)
    extras = {}
    if config.impute:
        extras["imputed"] = _impute(model, z, g)
    logg.info("    finished", time=start, deep="embedding (N x 64)" + (", imputed (N x G)" if config.impute else ""))
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    info = {
        "device": str(dev), "batch_mode": mode, "sparse_input": sparse,
        "precision": precision, "lr": lr, "epochs": epochs,
        "steps_per_epoch": steps_per_epoch, "pcl_warmup": warmup, "n_domains": state["n_domains"],
        "n_slices": n_slices, "slices": slice_names, "memory_estimate_gb": est["total"] / 1e9,
        "memory_budget_gb": budget / 1e9, "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu_seconds,
        "seconds_per_epoch": train_seconds / max(epochs, 1), "peak_rss_mb": peak_rss,
        "config": asdict(config),
    }
    if dev.type == "cuda":
        info["peak_gpu_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return FitResult(embedding=z.cpu().numpy().astype(np.float32), history=history, state_dict=state_dict,
                     extras=extras, info=info)


def _spotscape_prep():
    from ..pp import PrepConfig

    return PrepConfig(n_top_genes=5000, hvg_flavor="seurat_v3", normalize_scope="hvg", scale="none")


register(MethodSpec(
    name="spotscape",
    config_class=SpotscapeConfig,
    fit=fit_spotscape,
    prep=_spotscape_prep(),
    cluster_algorithm="kmeans_cosine",  # benchmarks/results/defaults_cluster.md
    description="Spotscape: Similarity Telescope relation consistency + prototypical contrast + similarity "
                "scaling (Oh et al., ICML 2025); multi-slice integration without alignment",
))
