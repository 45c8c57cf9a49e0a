"""Products with constant matrices: the feature matrix X (dense, CSR or bfloat16) and the GCN adjacency.

Both methods multiply the same constant X by a learned weight every step, and gradients are only
needed for the weight. :class:`ConstantFeatures` holds X once on the device (with the transpose the
weight gradient needs) and is the one place where that product is made.

Three custom :class:`torch.autograd.Function` are kept here, each because torch's own backward would
cost more for a constant operand (gradient-checked against autograd in ``tests/unit/test_nn.py``):

* :class:`SparseMatmul` - ``X @ W`` with a constant CSR ``X``: torch transposes the CSR matrix on
  every backward call; here ``X^T`` is built once;
* :class:`LowPrecisionMatmul` - both products in bfloat16 (fp32 accumulation) with no float32 copy of
  ``X`` kept for backward (autocast would keep one and cast on every step);
* :class:`SymmetricSpmm` - ``A @ H`` for a constant symmetric sparse ``A``: the backward is ``A @ G``
  again, with no sparse transpose.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from .._utils import InputError

__all__ = ["SparseMatmul", "LowPrecisionMatmul", "SymmetricSpmm", "ConstantFeatures", "to_torch_csr", "prefer_sparse"]


class SparseMatmul(torch.autograd.Function):
    """``X @ W`` for a constant sparse CSR ``X``; the backward uses the precomputed CSR of ``X^T``.

    ``apply(x, xt, w)`` with ``x`` ``(N, G)`` CSR, ``xt`` its ``(G, N)`` transpose (CSR), ``w``
    ``(G, k)`` dense; returns ``(N, k)``. Only ``w`` receives a gradient.
    """

    @staticmethod
    def forward(ctx, x: Tensor, xt: Tensor, w: Tensor) -> Tensor:  # type: ignore[override]
        ctx.xt = xt
        return x @ w

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return None, None, ctx.xt @ grad


class LowPrecisionMatmul(torch.autograd.Function):
    """``X @ W`` with a constant low-precision ``X``: both products in ``X``'s dtype (bfloat16 with
    fp32 accumulation), output and gradient in ``W``'s dtype. ``apply(xb, w)``."""

    @staticmethod
    def forward(ctx, xb: Tensor, w: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(xb)
        ctx.out_dtype = w.dtype
        return (xb @ w.to(xb.dtype)).to(w.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (xb,) = ctx.saved_tensors
        return None, (xb.T @ grad.to(xb.dtype)).to(ctx.out_dtype)


class SymmetricSpmm(torch.autograd.Function):
    """``A @ H`` for a constant symmetric sparse ``A``; the backward product is ``A @ grad``.

    ``apply(adj, h)``: ``adj`` ``(N, N)`` sparse (CSR), ``h`` ``(N, k)`` dense.
    """

    @staticmethod
    def forward(ctx, adj: Tensor, h: Tensor) -> Tensor:  # type: ignore[override]
        ctx.adj = adj
        return adj @ h

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return None, ctx.adj @ grad


def to_torch_csr(m, device=None, dtype=torch.float32) -> Tensor:
    """A SciPy/NumPy matrix as a torch CSR tensor (int32 indices while they fit; sorted columns)."""
    m = sp.csr_matrix(m, dtype=np.dtype(str(dtype).replace("torch.", "")))
    m.sort_indices()
    index_dtype = np.int32 if m.nnz < 2**31 - 1 else np.int64
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(m.indptr.astype(index_dtype)),
                                       torch.from_numpy(m.indices.astype(index_dtype)),
                                       torch.from_numpy(m.data), size=m.shape).to(device)


def prefer_sparse(x, mode: str = "auto", *, max_density: float = 0.05) -> bool:
    """Whether to keep ``x`` as CSR: ``"always"``, ``"never"``, or ``"auto"`` = fewer than ``max_density``
    non-zeros (estimated on the first 20,000 rows of a dense array).

    Raises :class:`~spatialdomains._utils.InputError` for another ``mode``. The 5 % default was measured on a 2-core AVX-512 CPU:
    torch CSR x dense beats dense GEMM only below about 5 % non-zeros.
    """
    if mode not in ("auto", "always", "never"):
        raise InputError(f"sparse_input must be auto, always or never, got {mode!r}")
    if mode != "auto":
        return mode == "always"
    n = x.shape[0] * x.shape[1]
    rows = min(x.shape[0], 20000)
    nnz = x.nnz if sp.issparse(x) else int(np.count_nonzero(x[:rows])) * x.shape[0] / max(rows, 1)
    return n > 0 and nnz / n < max_density


class ConstantFeatures:
    """A constant ``(N, G)`` feature matrix on the device, multiplied by learned weights.

    Parameters
    ----------
    x
        NumPy array or SciPy sparse matrix.
    device
        Torch device.
    sparse
        Keep X as CSR (with its CSR transpose for weight gradients); worth it below a few per cent
        non-zeros on CPUs.
    dtype
        Dtype of X and of the products (float32 or float64).
    low_precision
        Dense X only: multiply in bfloat16 during training (:class:`LowPrecisionMatmul`).
    """

    def __init__(self, x, device=None, *, sparse: bool = False, dtype: torch.dtype = torch.float32,
                 low_precision: bool = False):
        self.sparse = bool(sparse)
        self.device = device
        self.xb = None
        if self.sparse:
            m = sp.csr_matrix(x)
            self.x = to_torch_csr(m, device, dtype)
            self._xt = to_torch_csr(m.T.tocsr(), device, dtype)
            self.n_rows, self.n_cols = m.shape
        else:
            arr = x.toarray() if sp.issparse(x) else np.asarray(x)
            np_dtype = np.float64 if dtype == torch.float64 else np.float32
            self.x = torch.as_tensor(np.ascontiguousarray(arr, dtype=np_dtype), device=device)
            self.n_rows, self.n_cols = arr.shape
            self._xt = None  # made on first use by matmul_columns
            if low_precision:
                self.xb = self.x.to(torch.bfloat16)

    @property
    def xt(self) -> Tensor:
        """``X^T``: CSR for sparse X; for dense X a contiguous copy (bfloat16 with ``low_precision``)
        made on first use, which turns the gather of masked feature columns into a fast row gather."""
        if self._xt is None:
            self._xt = (self.x if self.xb is None else self.xb).T.contiguous()
        return self._xt

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.n_rows, self.n_cols))

    def matmul(self, w: Tensor) -> Tensor:
        """``X @ w`` (``w`` is ``(G, k)``; differentiable in ``w``)."""
        if self.sparse:
            if torch.is_grad_enabled() and w.requires_grad:
                return SparseMatmul.apply(self.x, self.xt, w)
            return self.x @ w
        if self.xb is not None and torch.is_grad_enabled():
            return LowPrecisionMatmul.apply(self.xb, w)
        return self.x @ w

    def matmul_columns(self, cols: Tensor, w_rows: Tensor) -> Tensor:
        """``X[:, cols] @ w_rows`` (dense X only)."""
        sub = self.xt[cols].T
        if self.xb is not None:
            return LowPrecisionMatmul.apply(sub, w_rows) if torch.is_grad_enabled() else sub.float() @ w_rows
        return sub @ w_rows

    def stats(self, n_rows: int) -> tuple[Tensor, Tensor]:
        """``(||X[:n]||^2, 1^T X[:n])`` in float64 (the constants of the Gram-form reconstruction loss)."""
        if self.sparse:
            crow = self.x.crow_indices()
            hi = int(crow[n_rows])
            vals = self.x.values()[:hi].double()
            cols = self.x.col_indices()[:hi].long()
            col_sum = torch.zeros(self.n_cols, dtype=torch.float64, device=self.device).index_add_(0, cols, vals)
            return (vals * vals).sum(), col_sum
        xd = self.x[:n_rows].double()
        return (xd * xd).sum(), xd.sum(0)
