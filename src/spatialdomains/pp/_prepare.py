from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from .. import _logging as logg
from .._constants import COUNTS_LAYER, HVG_KEY, SLICE_KEY, SPATIAL
from .._utils import InputError, record
from ._hvg import highly_variable_genes
from ._normalize import normalize, scale_genes


@dataclass(frozen=True)
class PrepConfig:
    """How expression becomes model features (spec A1 for STAIG, B1 for Spotscape).

    ``normalize_scope``: ``"all"`` normalises library size over every gene then keeps the HVGs
    (STAIG); ``"hvg"`` keeps the HVGs first so the library size is the sum over HVGs (Spotscape).
    HVGs are chosen per slice and intersected across the slices of a group.
    """

    n_top_genes: int = 3000
    hvg_flavor: str = "seurat_v3"
    normalize_scope: str = "all"
    target_sum: float | None = 1e4
    log1p: bool = True
    scale: str = "none"
    max_value: float | None = 10.0

    def replace(self, **changes) -> "PrepConfig":
        values = asdict(self)
        values.update({k: v for k, v in changes.items() if v is not None})
        return PrepConfig(**values)


def concat_slices(adatas: Sequence, *, join: str = "inner", copy: bool = True):
    """Concatenate slices, keeping ``obs['slice']``, ``obsm`` present in all, and ``uns['spatial']``.

    A single slice is copied unless ``copy=False`` (then it is returned itself, ``obs['slice']`` made
    categorical in place).
    """
    import anndata as ad

    if not adatas:
        raise InputError("no slices to concatenate")
    for i, a in enumerate(adatas):
        if SLICE_KEY not in a.obs:
            raise InputError(f"slice {i} has no obs['{SLICE_KEY}']")
        if SPATIAL not in a.obsm:
            raise InputError(f"slice {a.obs[SLICE_KEY].iloc[0]!s} has no obsm['spatial']")
    ids = [str(a.obs[SLICE_KEY].iloc[0]) for a in adatas]
    if len(set(ids)) != len(ids):
        raise InputError(f"duplicate slice ids in one group: {ids}")
    if len(adatas) == 1:
        out = adatas[0].copy() if copy else adatas[0]
    else:
        names = np.concatenate([a.obs_names.to_numpy() for a in adatas])
        unique_names = len(set(names)) == len(names)
        out = ad.concat(list(adatas), join=join, merge="same", uns_merge="unique",
                        index_unique=None if unique_names else "-", keys=None if unique_names else ids)
    out.obs[SLICE_KEY] = out.obs[SLICE_KEY].astype(str).astype("category")
    out.obs[SLICE_KEY] = out.obs[SLICE_KEY].cat.reorder_categories(ids)
    return out


def prepare_group(adatas: Sequence, config: PrepConfig = PrepConfig(), *, platform: str = "other",
                  graph_kind: str | None = None, graph_k: int | None = None, graph_radius: float | None = None):
    """Turn QC'd slices of one group into model input: HVG features in ``X`` and the spatial graph.

    Per slice: HVGs from raw counts, library-size normalisation, log1p; the slice is cut to its own
    HVGs right away. The group keeps the genes that are HVG in every slice (in the first slice's HVG
    order), then scales them (``config.scale``). Writes ``X`` (float32, spots x group HVGs: sparse CSR,
    dense only for ``scale="zscore"``, which centres), ``layers['counts']`` (the same genes),
    ``obs['slice']``, ``obsp['spatial_connectivities']`` (block-diagonal) and
    ``uns['spatialdomains']['prepare']``. Nothing spots x all-genes is ever densified.

    The HVGs are chosen per slice (``highly_variable_genes``) and intersected rather than by one
    ``scanpy.pp.highly_variable_genes(batch_key=...)`` call: for ``seurat_v3`` the intersection is the
    same genes (``highly_variable_nbatches`` equal to the number of slices; a test checks it), but
    ``normalize_scope="hvg"`` normalises each slice by its library size over *its own* HVGs, which the
    batched call does not return, and the feature order is the first slice's rank.
    """
    from ..graph import spatial_graph

    if config.normalize_scope not in ("all", "hvg"):
        raise InputError(f"normalize_scope must be 'all' or 'hvg', got {config.normalize_scope!r}")
    start = logg.info(f"preparing a group of {len(adatas)} slice(s)")
    processed = []
    for a in adatas:
        a = _counts_copy(a)
        if config.hvg_flavor == "moran":
            spatial_graph(a, kind=graph_kind, k=graph_k, radius=graph_radius, platform=platform)
        highly_variable_genes(a, config.n_top_genes, flavor=config.hvg_flavor)
        hvg = a.var[HVG_KEY].to_numpy()
        if config.normalize_scope == "hvg" and not hvg.all():  # library size over the slice's HVGs (Spotscape)
            a = a[:, hvg].copy()
        normalize(a, target_sum=config.target_sum, log1p=config.log1p, scale="none")
        if config.normalize_scope == "all" and not hvg.all():  # library size over every gene (STAIG), then HVGs
            a = a[:, hvg].copy()
        processed.append(a)
    genes = processed[0].var_names
    for other in processed[1:]:
        genes = genes.intersection(other.var_names, sort=False)
    if len(genes) == 0:
        raise InputError("the slices of this group share no highly variable genes; check gene ids "
                         "(symbols vs Ensembl) or raise n_top_genes")
    order = processed[0].var.loc[genes, "hvg_rank"].sort_values(kind="stable").index
    subsets = []
    for a in processed:  # the slices are this function's own copies: cut (copy) only when genes differ
        s = a if a.var_names.equals(order) else a[:, order].copy()
        if config.scale != "none":  # each slice on its own spots
            scale_genes(s, zero_center=(config.scale == "zscore"), max_value=config.max_value)
        subsets.append(s)
    del processed
    out = concat_slices(subsets, copy=False)
    del subsets
    out.X = sp.csr_matrix(out.X, dtype=np.float32) if sp.issparse(out.X) else np.asarray(out.X, dtype=np.float32)
    spatial_graph(out, kind=graph_kind, k=graph_k, radius=graph_radius, platform=platform)
    record(out, "prepare", {**asdict(config), "platform": platform, "n_genes": int(out.n_vars),
                            "n_spots": int(out.n_obs), "slices": list(out.obs[SLICE_KEY].cat.categories),
                            "x_format": "csr" if sp.issparse(out.X) else "dense"})
    logg.info(f"    finished: {out.n_obs} spots x {out.n_vars} genes", time=start,
              deep="added X, layers['counts'], obsp['spatial_connectivities']")
    return out


def _counts_copy(adata):
    """A copy of ``adata`` without its ``X`` (``normalize`` rebuilds it from the counts): counts, obs,
    var, obsm, obsp and uns are copied, so the input is never written; one O(nnz) copy, not two."""
    import copy as _copy

    import anndata as ad

    counts = adata.layers[COUNTS_LAYER] if COUNTS_LAYER in adata.layers else adata.X
    return ad.AnnData(obs=adata.obs.copy(), var=adata.var.copy(), uns=_copy.deepcopy(dict(adata.uns)),
                      obsm={k: _copy.copy(v) for k, v in adata.obsm.items()},
                      obsp={k: v.copy() for k, v in adata.obsp.items()},
                      layers={COUNTS_LAYER: counts.copy()})

