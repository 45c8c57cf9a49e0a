"""AnnData (``.h5ad``) reader: data already in AnnData form, checked against the contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import _logging as logg
from .._constants import SLICE_KEY, SPATIAL
from .._utils import InputError
from ._constants import H5AD_SUFFIX, Format, Unit
from ._utils import PathLike, check_unique, finalize, require_file, use_raw_counts


def read_h5ad(path: PathLike, *, library_id: str | None = None):
    """Read an ``.h5ad`` that already holds spatial coordinates.

    Parameters
    ----------
    path
        The ``.h5ad`` file.
    library_id
        Value of ``obs['slice']``. Default: the file's single ``obs['slice']`` value, else the file
        name without ``.h5ad``.

    Returns
    -------
    The AnnData, with everything it held, plus:

    - ``X`` and ``layers['counts']``: float32 CSR raw counts, taken from ``layers['counts']`` when
      present, else from ``X`` (a warning says so when ``X`` holds non-integers);
    - ``obsm['spatial']``: float64 (x, y), the first two columns of the stored ``obsm['spatial']``
      (more columns are a warning);
    - ``obs['slice']``; ``uns['spatial']``: a single entry is renamed to ``library_id``;
    - ``uns['spatialdomains']['read']``.

    Raises
    ------
    InputError
        A missing or unreadable file, no ``obsm['spatial']`` (naming the file and the ``obsm`` keys it
        has), missing or non-numeric coordinates (naming the row), negative counts, several slices in
        ``obs['slice']``, duplicated ``obs_names``.

    Notes
    -----
    Files read: ``path``.
    """
    import anndata as ad

    path = Path(path)
    require_file(path, "h5ad file")
    start = logg.info(f"reading {Format.H5AD} from {path}")
    try:
        adata = ad.read_h5ad(path)
    except Exception as e:  # h5py/anndata raise many kinds on corrupt files
        raise InputError(f"{path}: cannot be read as h5ad ({type(e).__name__}: {e})") from e
    if SPATIAL not in adata.obsm:
        raise InputError(f"{path}: no obsm['{SPATIAL}'] with spot coordinates (obsm has: {list(adata.obsm)}); "
                         "store (x, y) per spot in obsm['spatial']")
    xy = adata.obsm[SPATIAL]
    xy = xy.to_numpy() if isinstance(xy, pd.DataFrame) else np.asarray(xy)
    if xy.ndim != 2 or xy.shape[1] < 2:
        raise InputError(f"{path}: obsm['{SPATIAL}'] has shape {xy.shape}, expected (n_spots, 2)")
    if xy.dtype.kind not in "iuf":
        raise InputError(f"{path}: non-numeric coordinates in obsm['{SPATIAL}'] (dtype {xy.dtype})")
    details: dict = {"files": [str(path)]}
    if xy.shape[1] > 2:
        logg.warning(f"{path}: obsm['{SPATIAL}'] has {xy.shape[1]} columns; keeping the first two as (x, y)")
        details["dropped_coordinate_columns"] = int(xy.shape[1] - 2)
    xy = xy[:, :2].astype(np.float64)
    bad = ~np.isfinite(xy).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{path}: missing coordinates in obsm['{SPATIAL}'] at row {adata.obs_names[i]!r} "
                         f"(index {i}; {int(bad.sum())} rows bad)")
    check_unique(adata.obs_names, file=path, what="obs name")

    details["counts_from"] = use_raw_counts(adata, file=path)

    slices = adata.obs[SLICE_KEY].astype(str).unique() if SLICE_KEY in adata.obs else []
    if len(slices) > 1:
        raise InputError(f"{path}: obs['{SLICE_KEY}'] holds {len(slices)} slices ({list(slices)[:5]}); give one "
                         "slice per sample-sheet row")
    if library_id is None:
        library_id = str(slices[0]) if len(slices) == 1 else path.name[: -len(H5AD_SUFFIX)] if \
            path.name.endswith(H5AD_SUFFIX) else path.stem
    spatial = adata.uns.get(SPATIAL)
    if isinstance(spatial, dict) and len(spatial) == 1 and str(library_id) not in spatial:
        (old,) = spatial
        adata.uns[SPATIAL] = {str(library_id): spatial[old]}
        details["renamed_uns_spatial"] = str(old)
    adata = finalize(adata, xy=xy, library_id=str(library_id), fmt=Format.H5AD, source=path, unit=Unit.AS_IN_FILE,
                     file=path, details=details)
    logg.info(f"    finished: {adata.n_obs} spots x {adata.n_vars} genes", time=start,
              deep="added X, layers['counts'] (raw counts), obs['slice'], obsm['spatial'] (float64), "
                   "uns['spatialdomains']['read']")
    return adata
