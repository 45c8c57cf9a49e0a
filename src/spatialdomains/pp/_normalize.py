from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._constants import COUNTS_LAYER
from .._utils import InputError, record


def normalize(
    adata,
    *,
    target_sum: float | None = 1e4,
    log1p: bool = True,
    scale: str = "none",
    max_value: float | None = 10.0,
    copy: bool = False,
):
    """Library-size normalise from ``layers['counts']``, log1p, and optionally scale genes.

    ``scale``: ``"none"``; ``"sd"`` divides each gene by its standard deviation without centring and
    clips at ``max_value`` (what STAIG's single-slice code does); ``"zscore"`` centres and scales
    (the paper's wording). Writes ``X`` (float32) and keeps counts in ``layers['counts']``.

    ``X`` stays sparse (CSR) from counts to output for ``"none"`` and ``"sd"`` (scaling without
    centring keeps zeros); only ``"zscore"`` needs a dense ``X`` (spots x genes: subset the genes
    first, as :func:`prepare_group` does).
    """
    import scanpy as sc

    adata = adata.copy() if copy else adata
    if scale not in ("none", "sd", "zscore"):
        raise InputError(f"unknown scale {scale!r}; use none, sd or zscore")
    if COUNTS_LAYER not in adata.layers:
        adata.layers[COUNTS_LAYER] = adata.X.copy()
    X = adata.layers[COUNTS_LAYER]
    adata.X = sp.csr_matrix(X, dtype=np.float32, copy=True) if sp.issparse(X) else np.array(X, dtype=np.float32)
    if target_sum is not None:
        sc.pp.normalize_total(adata, target_sum=target_sum)
    if log1p:
        sc.pp.log1p(adata)
        adata.uns.pop("log1p", None)
    if scale != "none":
        scale_genes(adata, zero_center=(scale == "zscore"), max_value=max_value)
    record(adata, "normalize", dict(target_sum=target_sum, log1p=log1p, scale=scale, max_value=max_value))
    return adata if copy else None


def scale_genes(adata, *, zero_center: bool, max_value: float | None) -> None:
    """:func:`scanpy.pp.scale` of ``X`` in place, keeping ``X`` float32 and sparse when it can be.

    Without centring a sparse ``X`` stays sparse (scanpy divides the stored values by each gene's sd
    and clips them); centring makes it dense.
    """
    import scanpy as sc

    if sp.issparse(adata.X) and zero_center:
        adata.X = adata.X.toarray()
    sc.pp.scale(adata, zero_center=zero_center, max_value=max_value)
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32) if sp.issparse(adata.X) \
        else np.asarray(adata.X, dtype=np.float32)
