"""STAIG's neighbour-contrastive loss (spec A6) in its plain, debiased (DS) and multi-slice forms,
without any N x N tensor (spec D3).

:func:`make_loss_plan` precomputes what is constant across epochs (:class:`LossPlan`);
:func:`staig_loss` evaluates the loss. The all-pairs denominator is computed exactly in tiles by
:class:`PairwiseLogSum` (memory O(tile^2 + N d)), or estimated from sampled same-slice negatives by
:class:`SampledLogDenominator`. Both are custom autograd functions because they compute their
gradient inside ``forward`` while the tiles are at hand, so autograd keeps nothing per tile (the
plain autograd form would store every tile); ``tests/unit/test_staig.py`` checks them with
``gradcheck`` and against the dense reference written literally from the spec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..._utils import InputError

__all__ = ["LOSS_MODES", "LossPlan", "make_loss_plan", "auto_tile", "PairwiseLogSum", "SampledLogDenominator",
           "staig_loss"]

LOG2E = 1.0 / math.log(2.0)
LOSS_MODES = ("exact", "sampled")


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


def auto_tile(length: int, device: torch.device) -> int:
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


class PairwiseLogSum(torch.autograd.Function):
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
            t = min(tile or auto_tile(length, device), length)
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


class SampledLogDenominator(torch.autograd.Function):
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
        logden = PairwiseLogSum.apply(z, extra, tau, weight, plan.stack_segments, plan.stack_labels,
                                       plan.block_size, plan.memory_budget_mb, need, plan.workspace)
    else:
        logden = 0.0
        for za, zb, extra in ((z1, z2, extra12), (z2, z1, extra21)):
            segments = []
            for a, b in plan.segments:
                cols = torch.randint(a, b, (n_negatives,), generator=generator).to(z1.device)
                segments.append((a, b, cols, (b - a) / n_negatives))
            logden = logden + SampledLogDenominator.apply(za, zb, extra, tau, weight, segments, plan.labels,
                                                          plan.memory_budget_mb, need)
    numerator = (torch.log(pos12).sum() + torch.log(pos21).sum() - 2 * plan.log_count.to(z1.dtype).sum()) * weight
    return logden - numerator
