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
    """
    import scanpy as sc

    adata = adata.copy() if copy else adata
    if scale not in ("none", "sd", "zscore"):
        raise InputError(f"unknown scale {scale!r}; use none, sd or zscore")
    if COUNTS_LAYER not in adata.layers:
        adata.layers[COUNTS_LAYER] = adata.X.copy()
    X = adata.layers[COUNTS_LAYER]
    adata.X = X.astype(np.float32) if sp.issparse(X) else np.asarray(X, dtype=np.float32)
    if target_sum is not None:
        sc.pp.normalize_total(adata, target_sum=target_sum)
    if log1p:
        sc.pp.log1p(adata)
        adata.uns.pop("log1p", None)
    if scale != "none":
        if sp.issparse(adata.X) and scale == "zscore":
            adata.X = adata.X.toarray()
        sc.pp.scale(adata, zero_center=(scale == "zscore"), max_value=max_value)
        X = adata.X.toarray() if sp.issparse(adata.X) else adata.X
        adata.X = np.asarray(X, dtype=np.float32)
    record(adata, "normalize", dict(target_sum=target_sum, log1p=log1p, scale=scale, max_value=max_value))
    return adata if copy else None
