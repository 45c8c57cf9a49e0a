from __future__ import annotations

from typing import Any

import numpy as np

from .. import _logging as logg
from .._constants import COUNTS_LAYER, QC_KEY, SLICE_KEY
from .._utils import InputError, record


def _counts(adata):
    return adata.layers[COUNTS_LAYER] if COUNTS_LAYER in adata.layers else adata.X


def qc(
    adata,
    *,
    min_counts: int = 0,
    min_genes: int = 0,
    max_mt_pct: float = 100.0,
    min_cells: int = 0,
    mt_prefix: str = "MT-",
    copy: bool = False,
):
    """Compute per-spot QC metrics and drop spots/genes that fail the thresholds.

    Metrics come from :func:`scanpy.pp.calculate_qc_metrics` on ``layers['counts']`` (else ``X``),
    sparse, without copying the counts. Writes ``obs['total_counts', 'n_genes_by_counts',
    'pct_counts_mt']``, ``var['mt', 'n_cells_by_counts']`` and ``uns['spatialdomains']['qc']``
    (thresholds and how many spots/genes were removed: nothing is dropped silently), then keeps the
    passing spots and genes.

    Returns
    -------
    ``None`` (``adata`` is filtered in place), or the filtered copy when ``copy=True`` (``adata`` is
    then left untouched).
    """
    import scanpy as sc

    if adata.n_obs == 0:
        raise InputError("the slice has no spots")
    adata = adata.copy() if copy else adata
    counts = _counts(adata)
    start = logg.info(f"QC on {adata.n_obs} spots x {adata.n_vars} genes")
    adata.var["mt"] = np.asarray(adata.var_names.str.upper().str.startswith(mt_prefix.upper()))
    # a view-free shell around the same counts: scanpy only reads X here
    shell = sc.AnnData(X=counts, obs=adata.obs[[]], var=adata.var[["mt"]])
    sc.pp.calculate_qc_metrics(shell, qc_vars=["mt"], percent_top=None, inplace=True, log1p=False)
    for col in ("total_counts", "n_genes_by_counts", "pct_counts_mt"):
        adata.obs[col] = shell.obs[col].to_numpy()
    adata.var["n_cells_by_counts"] = shell.var["n_cells_by_counts"].to_numpy()
    del shell
    keep_spots = (
        (adata.obs["total_counts"].to_numpy() >= min_counts)
        & (adata.obs["n_genes_by_counts"].to_numpy() >= min_genes)
        & (np.nan_to_num(adata.obs["pct_counts_mt"].to_numpy(), nan=0.0) <= max_mt_pct)
    )
    keep_genes = adata.var["n_cells_by_counts"].to_numpy() >= min_cells
    n_spots_removed = int((~keep_spots).sum())
    n_genes_removed = int((~keep_genes).sum())
    if keep_spots.sum() == 0:
        raise InputError(
            f"QC removed every spot (min_counts={min_counts}, min_genes={min_genes}, max_mt_pct={max_mt_pct})"
        )
    summary = qc_summary(adata)
    summary.update(
        n_spots_in=int(adata.n_obs),
        n_genes_in=int(adata.n_vars),
        n_spots_out=int(keep_spots.sum()),
        n_genes_out=int(keep_genes.sum()),
        n_spots_removed=n_spots_removed,
        n_genes_removed=n_genes_removed,
        thresholds=dict(min_counts=min_counts, min_genes=min_genes, max_mt_pct=max_mt_pct, min_cells=min_cells),
    )
    # in place, as scanpy's filter_cells/filter_genes do (no second copy of the counts)
    if n_spots_removed:
        adata._inplace_subset_obs(np.flatnonzero(keep_spots))
    if n_genes_removed:
        adata._inplace_subset_var(np.flatnonzero(keep_genes))
    record(adata, QC_KEY, summary)
    logg.info(f"    finished: kept {adata.n_obs} spots, {adata.n_vars} genes "
              f"(removed {n_spots_removed} spots, {n_genes_removed} genes)", time=start)
    return adata if copy else None


def qc_summary(adata) -> dict[str, Any]:
    """Medians and quantiles of the QC metrics (for qc.json and the report)."""
    obs = adata.obs
    summary: dict[str, Any] = {"slice": str(obs[SLICE_KEY].iloc[0]) if SLICE_KEY in obs and len(obs) else None}
    for col in ("total_counts", "n_genes_by_counts", "pct_counts_mt"):
        if col in obs:
            v = obs[col].to_numpy(dtype=float)
            summary[col] = {
                "median": float(np.nanmedian(v)),
                "q05": float(np.nanquantile(v, 0.05)),
                "q95": float(np.nanquantile(v, 0.95)),
            }
    return summary
