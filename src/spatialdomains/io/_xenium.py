"""10x Xenium reader: cell-feature matrix + cell centroids (microns).

Ours, not ``spatialdata_io.xenium`` (0.7.1), because that reader opens ``cells.zarr.zip`` and
``experiment.xenium`` unconditionally, reads only ``cells.parquet`` (not the ``cells.csv.gz`` of older
Xenium Onboard Analysis outputs), and asserts that the cells table lists the matrix's cells in the same
order (checked on a sample) instead of matching cell ids. This reader needs only the matrix and one cells
table, matches ids (counting cells missing from either) and keeps ``experiment.xenium`` optional.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import _logging as logg
from .._utils import InputError
from ._constants import PARQUET_SUFFIX, XENIUM_EXPERIMENT_KEYS, Format, Unit, XeniumCol, XeniumFile
from ._tenx import read_10x_counts
from ._utils import PathLike, check_unique, finalize, match_barcodes, numeric_column

_LAYOUT = (f"Xenium Onboard Analysis output: {XeniumFile.MATRIX_H5} and {XeniumFile.CELLS_PARQUET} "
           f"(or {XeniumFile.CELLS_CSV})")


def _cell_ids(values: pd.Series) -> pd.Index:
    """Cell ids as str (Xenium < 1.3 writes integers, later versions bytes or strings)."""
    if values.dtype == object:
        values = values.map(lambda v: v.decode() if isinstance(v, bytes) else v)
    return pd.Index(values.astype(str).to_numpy(), name=None)


def _read_cells(path: Path) -> pd.DataFrame:
    try:
        cells = (pd.read_parquet(path) if path.suffix == PARQUET_SUFFIX
                 else pd.read_csv(path, dtype={XeniumCol.CELL_ID: str}))
    except Exception as e:  # pyarrow / parser errors on corrupt files
        raise InputError(f"{path}: cannot be read ({e})") from e
    missing = [c for c in (XeniumCol.CELL_ID, XeniumCol.X, XeniumCol.Y) if c not in cells.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; Xenium cells tables have "
                         f"{XeniumCol.CELL_ID}, {XeniumCol.X}, {XeniumCol.Y} (found: {list(cells.columns)[:10]})")
    cells.index = _cell_ids(cells.pop(XeniumCol.CELL_ID))
    check_unique(cells.index, file=path, what="cell id")
    return cells


def _experiment(path: Path) -> dict:
    exp = path / XeniumFile.EXPERIMENT
    if not exp.is_file():
        return {}
    try:
        with open(exp) as fh:
            meta = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{exp}: invalid JSON ({e})") from e
    return {k: meta[k] for k in XENIUM_EXPERIMENT_KEYS if isinstance(meta, dict) and meta.get(k) is not None}


def read_xenium(path: PathLike, *, library_id: str | None = None):
    """Read a 10x Xenium output directory: cell-by-gene counts and cell centroids.

    Parameters
    ----------
    path
        The Xenium output directory (``outs/``), or its ``cell_feature_matrix.h5``.
    library_id
        Value of ``obs['slice']``. Default: the directory's name.

    Returns
    -------
    AnnData with one row per cell present in both the matrix and the cells table:

    - ``X``, ``layers['counts']``: float32 CSR counts of ``Gene Expression`` features only. Control
      probes and codewords (``Negative Control Probe``, ``Negative Control Codeword``, ``Unassigned
      Codeword``, ``Genomic Control``, ...) are removed; each type's per-cell total goes to
      ``obs['dropped_<type>_counts']`` and its names and count to the read record;
    - ``obs_names``: cell ids; ``obs``: the other columns of the cells table; ``obs['slice']``;
    - ``var['gene_ids', 'feature_types', 'genome', 'gene_symbols']``;
    - ``obsm['spatial']``: float64 (x, y) = (``x_centroid``, ``y_centroid``) **in microns** (not pixels);
    - ``uns['spatialdomains']['read']``: ``coordinate_unit='micron'``, dropped features and cells, and
      ``pixel_size`` and run names from ``experiment.xenium`` when present.

    No ``uns['spatial']`` entry is written (no scale factors; the morphology image is not loaded).

    Raises
    ------
    InputError
        A missing matrix or cells table (naming the expected files), non-numeric or negative counts,
        missing centroid columns or values, or cell ids shared too little between the two files.

    Notes
    -----
    Files read: ``cell_feature_matrix.h5``; ``cells.parquet`` (else ``cells.csv.gz``);
    ``experiment.xenium`` (optional metadata).
    """
    path = Path(path)
    if path.is_file() and path.name == XeniumFile.MATRIX_H5:
        path = path.parent
    if not path.is_dir():
        raise InputError(f"{path}: Xenium output directory not found ({_LAYOUT})")
    start = logg.info(f"reading {Format.XENIUM} from {path}")
    h5 = path / XeniumFile.MATRIX_H5
    if not h5.is_file():
        raise InputError(f"{h5}: cell-feature matrix not found; expected the {_LAYOUT}")
    cells_path = next((path / n for n in (XeniumFile.CELLS_PARQUET, XeniumFile.CELLS_CSV) if (path / n).is_file()),
                      None)
    if cells_path is None:
        raise InputError(f"{path / XeniumFile.CELLS_PARQUET}: cells table not found (nor {XeniumFile.CELLS_CSV}); "
                         f"expected the {_LAYOUT}")
    cells = _read_cells(cells_path)
    adata, _attrs, dropped = read_10x_counts(h5)
    check_unique(adata.obs_names, file=h5, what="cell id")
    found = match_barcodes(adata.obs_names, cells.index, matrix_file=h5, coord_file=cells_path)
    adata = adata[np.flatnonzero(found)].copy()
    cells = cells.reindex(adata.obs_names)
    xy = np.column_stack([numeric_column(cells[c], file=cells_path, column=c, what="coordinate")
                          for c in (XeniumCol.X, XeniumCol.Y)])
    for col in cells.columns:
        if col not in adata.obs:
            adata.obs[col] = cells[col].to_numpy()
    details = {
        "files": [str(h5), str(cells_path)],
        "dropped_features": dropped,
        "dropped_cells": {"not_in_cells_table": int((~found).sum())},
        **_experiment(path),
    }
    adata = finalize(adata, xy=xy, library_id=library_id or path.resolve().name, fmt=Format.XENIUM, source=path,
                     unit=Unit.MICRON, file=h5, details=details)
    logg.info(f"    finished: {adata.n_obs} cells x {adata.n_vars} genes", time=start,
              deep="added X, layers['counts'], obs (cells table, 'slice'), obsm['spatial'] (microns), "
                   "uns['spatialdomains']['read']")
    return adata
