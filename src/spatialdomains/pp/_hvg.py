from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._constants import COUNTS_LAYER, HVG_KEY, SPATIAL_CONN
from .._utils import InputError

#: ``seurat_v3`` works on raw counts; ``seurat``/``cell_ranger`` on log-normalised data; ``moran``
#: ranks genes by Moran's I on the spatial graph (log-normalised data).
HVG_FLAVORS = ("seurat_v3", "seurat", "cell_ranger", "moran")


def highly_variable_genes(adata, n_top_genes: int = 3000, *, flavor: str = "seurat_v3", copy: bool = False):
    """Flag the ``n_top_genes`` most variable (or most spatially autocorrelated) genes.

    Writes ``var['highly_variable']`` (bool) and ``var['hvg_rank']`` (0 = most variable). With fewer
    genes than ``n_top_genes`` every gene is kept. Does not change ``X``.
    """
    import scanpy as sc

    adata = adata.copy() if copy else adata
    if flavor not in HVG_FLAVORS:
        raise InputError(f"unknown HVG flavour {flavor!r}; choose one of {', '.join(HVG_FLAVORS)}")
    n_top = min(int(n_top_genes), adata.n_vars)
    counts = adata.layers[COUNTS_LAYER] if COUNTS_LAYER in adata.layers else adata.X
    if n_top >= adata.n_vars:
        score = np.asarray((counts.power(2) if sp.issparse(counts) else np.asarray(counts) ** 2).sum(0)).ravel()
        rank = np.argsort(np.argsort(-score))
    elif flavor == "seurat_v3":
        tmp = sc.AnnData(X=counts)
        sc.pp.highly_variable_genes(tmp, n_top_genes=n_top, flavor="seurat_v3", inplace=True)
        rank = tmp.var["highly_variable_rank"].to_numpy()
        rank = np.where(np.isnan(rank), np.inf, rank)
        rank = np.argsort(np.argsort(rank))
    else:
        tmp = sc.AnnData(X=counts.astype(np.float32))
        sc.pp.normalize_total(tmp, target_sum=1e4)
        sc.pp.log1p(tmp)
        if flavor == "moran":
            if SPATIAL_CONN not in adata.obsp:
                raise InputError("HVG flavour 'moran' needs the spatial graph in obsp['spatial_connectivities']")
            score = np.nan_to_num(sc.metrics.morans_i(adata.obsp[SPATIAL_CONN], tmp.X.T.tocsr() if sp.issparse(tmp.X) else tmp.X.T))
        else:
            sc.pp.highly_variable_genes(tmp, n_top_genes=n_top, flavor=flavor, inplace=True)
            score = np.nan_to_num(tmp.var["dispersions_norm"].to_numpy(), nan=-np.inf)
        rank = np.argsort(np.argsort(-score, kind="stable"))
    adata.var[HVG_KEY] = rank < n_top
    adata.var["hvg_rank"] = rank.astype(np.int64)
    return adata if copy else None
