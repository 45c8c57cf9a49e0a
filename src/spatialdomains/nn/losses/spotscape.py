"""Spotscape's loss terms (spec B5) as pure functions, each in its scalable form (spec D3).

* :func:`relation_consistency_loss` - the Similarity Telescope by its exact O(B d^2) closed form;
* :func:`reconstruction_loss` - MSE of the linear decoder output without forming the B x G output;
* :func:`prototypical_contrastive_loss` with :func:`pcl_granularities` (prototypes from
  :func:`spatialdomains.nn.kmeans.kmeans_prototypes`);
* :func:`similarity_scaling_loss` - blocked no-grad top-k, then gathers with gradients.

Each is checked against its dense reference in ``tests/unit/test_spotscape.py``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["relation_consistency_loss", "reconstruction_loss", "pcl_granularities", "prototypical_contrastive_loss",
           "similarity_scaling_loss"]


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


def prototypical_contrastive_loss(z: Tensor, centroids: Sequence[Tensor], labels: Sequence[Tensor],
                                  tau: float = 0.75) -> Tensor:
    """Mean over rows and granularities of ``-log softmax_q(cos(z_i, c_q) / tau)[y_i]`` (spec B5.3).

    ``centroids[m]`` (K_m x d, un-normalised, treated as constants) and ``labels[m]`` (N,) come from
    :func:`~spatialdomains.nn.kmeans.kmeans_prototypes` on the other view.
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
