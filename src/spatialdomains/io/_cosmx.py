"""NanoString CosMx SMI flat-file reader (expression matrix + cell metadata).

Ours, not ``spatialdata_io.cosmx`` (0.7.1), because that reader requires files a flat-file export from
AtoMx does not always carry (``*_fov_positions_file.csv``, the ``CellComposite/`` and ``CellLabels/``
image folders, ``*_tx_file.csv`` unless transcripts are skipped, ``CenterX/Y_local_px``), matches the
file names without ``.gz`` (AtoMx exports are gzipped), and loads the whole expression matrix as one
dense frame. This reader needs the two tables only, reads them gzipped or not, parses the matrix in
blocks (one dense block at a time) and names the file, column and line of a bad value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import _logging as logg
from .._utils import InputError
from ._constants import (
    COSMX_BACKGROUND_CELL_ID,
    COSMX_CONTROL_PREFIXES,
    COSMX_ID_COLUMNS,
    GZ_SUFFIX,
    CosmxCol,
    CosmxFile,
    Format,
    Unit,
)
from ._utils import (
    PathLike,
    block_to_csr,
    check_unique,
    chunk_rows,
    finalize,
    header_cells,
    match_barcodes,
    numeric_column,
    split_features,
)

_LAYOUT = (f"CosMx flat files: one *{CosmxFile.EXPR_SUFFIX} (columns {CosmxCol.FOV}, {CosmxCol.CELL_ID}, genes) "
           f"and one *{CosmxFile.META_SUFFIX} (columns {CosmxCol.FOV}, {CosmxCol.CELL_ID}, {CosmxCol.X}, "
           f"{CosmxCol.Y}), optionally gzipped")


def _one(path: Path, suffix: str, what: str) -> Path:
    hits = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith((suffix, suffix + GZ_SUFFIX)))
    if not hits:
        raise InputError(f"{path}: no *{suffix} {what} file; expected {_LAYOUT}")
    if len(hits) > 1:
        raise InputError(f"{path}: {len(hits)} *{suffix} files ({[p.name for p in hits]}); keep one slide per "
                         "directory")
    return hits[0]


def cell_names(fov: np.ndarray, cell_id: np.ndarray) -> pd.Index:
    """``<cell_ID>_<fov>`` (as squidpy's ``read.nanostring``): cell ids repeat across FOVs."""
    return pd.Index([f"{c}_{f}" for c, f in zip(cell_id.astype(np.int64), fov.astype(np.int64))])


def _ids(frame: pd.DataFrame, *, file: Path, line0: int) -> tuple[np.ndarray, np.ndarray]:
    fov = numeric_column(frame[CosmxCol.FOV], file=file, column=CosmxCol.FOV, what="FOV", line_offset=line0)
    cid = numeric_column(frame[CosmxCol.CELL_ID], file=file, column=CosmxCol.CELL_ID, what="cell id",
                         line_offset=line0)
    return fov, cid


def _read_expression(path: Path):
    header = header_cells(path, ",")
    missing = [c for c in (CosmxCol.FOV, CosmxCol.CELL_ID) if c not in header]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; expected {_LAYOUT}")
    id_pos = [i for i, c in enumerate(header) if c in COSMX_ID_COLUMNS]
    feat_pos = [i for i, c in enumerate(header) if c not in COSMX_ID_COLUMNS]
    features = [header[i] for i in feat_pos]
    if not features:
        raise InputError(f"{path}: no gene columns after {CosmxCol.FOV}, {CosmxCol.CELL_ID}")
    blocks, names, n_background, background_counts = [], [], 0, 0.0
    line = 2  # first data line, 1-based
    dtypes = {header[i]: str for i in id_pos if header[i] == CosmxCol.CELL}
    try:
        reader = pd.read_csv(path, chunksize=chunk_rows(len(header)), dtype=dtypes)
        for chunk in reader:
            fov, cid = _ids(chunk, file=path, line0=line)
            labels = cell_names(fov, cid)
            block = chunk.iloc[:, feat_pos]
            X = block_to_csr(block, file=path, row_labels=labels, col_labels=features, first_line_no=line)
            bg = cid == COSMX_BACKGROUND_CELL_ID
            if bg.any():
                n_background += int(bg.sum())
                background_counts += float(X[np.flatnonzero(bg)].sum())
                X = X[np.flatnonzero(~bg)]
                labels = labels[~bg]
            blocks.append(X)
            names.append(labels)
            line += len(chunk)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot be parsed as CSV ({e})") from e
    X = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, len(features)), dtype=np.float32)
    obs_names = pd.Index(np.concatenate([n.to_numpy() for n in names])) if names else pd.Index([])
    return X, obs_names, features, n_background, background_counts


def _read_metadata(path: Path) -> pd.DataFrame:
    try:
        meta = pd.read_csv(path, dtype={CosmxCol.CELL: str})
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path}: cannot be parsed as CSV ({e})") from e
    missing = [c for c in (CosmxCol.FOV, CosmxCol.CELL_ID, CosmxCol.X, CosmxCol.Y) if c not in meta.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; expected {_LAYOUT}")
    fov, cid = _ids(meta, file=path, line0=2)
    meta = meta.loc[cid != COSMX_BACKGROUND_CELL_ID]
    meta.index = cell_names(fov[cid != COSMX_BACKGROUND_CELL_ID], cid[cid != COSMX_BACKGROUND_CELL_ID])
    check_unique(meta.index, file=path, what="cell (cell_ID, fov)")
    return meta


def read_cosmx(path: PathLike, *, library_id: str | None = None):
    """Read NanoString CosMx SMI flat files: the expression matrix and the cell metadata.

    Parameters
    ----------
    path
        Directory holding one ``*exprMat_file.csv`` and one ``*metadata_file.csv`` (each may be
        ``.gz``), or the expression file itself.
    library_id
        Value of ``obs['slice']``. Default: the directory's name.

    Returns
    -------
    AnnData with one row per cell (``cell_ID != 0``) present in both files:

    - ``X``, ``layers['counts']``: float32 CSR counts of the genes. Negative probes (``NegPrb*``) and
      system controls (``SystemControl*``) are removed; their per-cell totals go to
      ``obs['dropped_negprb_counts']``/``obs['dropped_systemcontrol_counts']`` and their names to the
      read record;
    - ``obs_names``: ``<cell_ID>_<fov>``; ``obs``: the metadata columns; ``obs['slice']``;
    - ``obsm['spatial']``: float64 (x, y) = (``CenterX_global_px``, ``CenterY_global_px``), pixels;
    - ``uns['spatialdomains']['read']``: dropped features, background rows (``cell_ID == 0``: their
      number and total counts) and cells without metadata.

    The matrix is parsed in blocks of rows, so only one block is ever dense.

    Raises
    ------
    InputError
        A missing file (naming the pattern expected), non-numeric, missing or negative counts (naming
        the column and the row), missing coordinate columns or values, or cells shared too little.

    Notes
    -----
    Files read: ``*exprMat_file.csv[.gz]``, ``*metadata_file.csv[.gz]``.
    """
    path = Path(path)
    if path.is_file() and path.name.endswith((CosmxFile.EXPR_SUFFIX, CosmxFile.EXPR_SUFFIX + GZ_SUFFIX)):
        path = path.parent
    if not path.is_dir():
        raise InputError(f"{path}: CosMx output directory not found ({_LAYOUT})")
    start = logg.info(f"reading {Format.COSMX} from {path}")
    expr_path = _one(path, CosmxFile.EXPR_SUFFIX, "expression matrix")
    meta_path = _one(path, CosmxFile.META_SUFFIX, "cell metadata")
    meta = _read_metadata(meta_path)
    X, obs_names, features, n_background, background_counts = _read_expression(expr_path)
    check_unique(obs_names, file=expr_path, what="cell (cell_ID, fov)")
    found = match_barcodes(obs_names, meta.index, matrix_file=expr_path, coord_file=meta_path)
    keep = np.flatnonzero(found)
    import anndata as ad

    meta = meta.reindex(obs_names[keep])
    adata = ad.AnnData(X=X[keep], obs=pd.DataFrame(index=obs_names[keep]),
                       var=pd.DataFrame(index=pd.Index(features)))
    xy = np.column_stack([numeric_column(meta[c], file=meta_path, column=c, what="coordinate")
                          for c in (CosmxCol.X, CosmxCol.Y)])
    for col in meta.columns:
        adata.obs[col] = meta[col].to_numpy()
    var_names = adata.var_names.astype(str)
    adata, dropped = split_features(adata, {group: np.asarray(var_names.str.startswith(prefix))
                                            for group, prefix in COSMX_CONTROL_PREFIXES.items()})
    if dropped:
        logg.info(f"    removed {sum(d['n_features'] for d in dropped.values())} control probes "
                  f"({', '.join(dropped)}); per-cell totals kept in obs")
    if n_background:
        logg.info(f"    removed {n_background} background rows ({CosmxCol.CELL_ID} == {COSMX_BACKGROUND_CELL_ID})")
    details = {
        "files": [str(expr_path), str(meta_path)],
        "dropped_features": dropped,
        "dropped_cells": {"background": n_background, "background_counts": background_counts,
                          "not_in_metadata": int((~found).sum())},
    }
    adata = finalize(adata, xy=xy, library_id=library_id or path.resolve().name, fmt=Format.COSMX, source=path,
                     unit=Unit.PIXEL, file=expr_path, details=details)
    logg.info(f"    finished: {adata.n_obs} cells x {adata.n_vars} genes", time=start,
              deep="added X, layers['counts'], obs (metadata, 'slice', 'dropped_*_counts'), obsm['spatial'], "
                   "uns['spatialdomains']['read']")
    return adata
