"""Plain tables: a counts matrix (CSV/TSV or 10x-style MTX) plus a coordinates CSV.

For Stereo-seq, Slide-seq, STARmap, MERFISH and any other export that boils down to "counts per
barcode" and "x, y per barcode". A Vizgen MERSCOPE export is read here too (``cell_by_gene.csv`` and
``cell_metadata.csv``, ``center_x``/``center_y`` in microns): ``spatialdata_io.merscope`` (0.7.1) needs
the ``images/`` folder with ``micron_to_mosaic_pixel_transform.csv`` and the mosaic TIFFs, which the
cell tables do not need.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import _logging as logg
from .._utils import InputError
from ._constants import (
    BARCODE_COLUMN_NAMES,
    COORD_FILE_TOKENS,
    COORD_NAME_PAIRS,
    COUNTS_FILE_TOKENS,
    GZ_SUFFIX,
    HEADERLESS_COORD_COLUMNS,
    TABLE_SUFFIXES,
    Format,
    MtxFile,
    TenxH5,
    Unit,
    VarCol,
)
from ._utils import (
    PathLike,
    block_to_csr,
    check_unique,
    chunk_rows,
    finalize,
    header_cells,
    is_number,
    match_barcodes,
    numeric_column,
    open_text,
    require_file,
    slug,
    split_features,
    strip_gz,
    table_sep,
)

MTX_SUFFIX = ".mtx"
_ACCEPTED_XY = ", ".join(f"{x}/{y}" for x, y in COORD_NAME_PAIRS)
_RECOGNISED = (
    f"a counts table (*.csv/*.tsv/*.txt[.gz], barcodes in the first column, or genes x barcodes) or a 10x-style "
    f"{MtxFile.MATRIX}[.gz] with {MtxFile.BARCODES}[.gz] and {MtxFile.FEATURES}[.gz]/{MtxFile.GENES}[.gz], plus one "
    f"coordinates table whose name contains one of {list(COORD_FILE_TOKENS)} (e.g. coords.csv, "
    f"<sample>_coords.csv, spatial.csv, positions.csv, bead_locations.csv)"
)


# --- file names -----------------------------------------------------------------------------------
def _bare(name: str) -> str:
    return strip_gz(name.lower())


def is_table_name(name: str) -> bool:
    return _bare(name).endswith(TABLE_SUFFIXES)


def is_mtx_name(name: str) -> bool:
    return _bare(name).endswith(MTX_SUFFIX)


def is_coord_name(name: str) -> bool:
    return is_table_name(name) and any(tok in _bare(name) for tok in COORD_FILE_TOKENS)


def _is_mtx_companion(name: str) -> bool:
    bare = _bare(name)
    return bare.endswith((MtxFile.BARCODES, MtxFile.FEATURES, MtxFile.GENES))


def _prefix(name: str, tokens: tuple[str, ...]) -> str:
    bare = _bare(name).rsplit(".", 1)[0]
    cut = min((bare.find(t) for t in tokens if t in bare), default=len(bare))
    return bare[:cut].strip("_-. ")


def find_table_pair(path: Path) -> tuple[Path, Path]:
    """The (counts, coordinates) pair for a directory, or for a counts file (coordinates beside it).

    A directory must hold exactly one counts file (a table, or ``matrix.mtx[.gz]``) and exactly one
    coordinates table (a name containing ``coord``, ``spatial``, ``position``, ``location``,
    ``centroid`` or ``cell_metadata``). When several tables could be counts, the one whose name
    contains ``count``, ``matrix``, ``expr``, ``cell_by_gene``, ``dge`` or ``umi`` wins. For a counts
    file, the coordinates table beside it with the same sample prefix (``s1_counts.csv`` ->
    ``s1_coords.csv``) wins, else the only one.
    """
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        coords = [p for p in files if is_coord_name(p.name)]
        mtx = [p for p in files if is_mtx_name(p.name)]
        others = [p for p in files if is_table_name(p.name) and p not in coords and not _is_mtx_companion(p.name)]
        counts = mtx or others
        if len(counts) > 1:
            named = [p for p in counts if any(t in _bare(p.name) for t in COUNTS_FILE_TOKENS)]
            counts = named if len(named) == 1 else counts
        if len(counts) != 1 or len(coords) != 1:
            raise InputError(f"{path}: expected exactly one counts file and one coordinates file, found counts "
                             f"{[p.name for p in counts]} and coordinates {[p.name for p in coords]} (all files: "
                             f"{[p.name for p in files][:20]}); recognised: {_RECOGNISED}")
        return counts[0], coords[0]
    require_file(path, "counts table")
    siblings = [p for p in sorted(path.parent.iterdir()) if p.is_file() and p != path and is_coord_name(p.name)]
    mine = _prefix(path.name, COUNTS_FILE_TOKENS)
    same = [p for p in siblings if _prefix(p.name, COORD_FILE_TOKENS) == mine]
    pick = same if len(same) == 1 else siblings
    if len(pick) != 1:
        raise InputError(f"{path}: cannot tell which coordinates file goes with it: found {[p.name for p in siblings]} "
                         f"in {path.parent}; recognised: {_RECOGNISED}")
    return path, pick[0]


# --- coordinates ----------------------------------------------------------------------------------
def read_coordinates(path: Path) -> tuple[pd.DataFrame, str, str]:
    """Read a coordinates table; return (frame indexed by barcode, x column, y column).

    With a header row the x/y columns are the first pair of ``COORD_NAME_PAIRS`` present (case
    insensitive) and the barcode column is the first one named like ``BARCODE_COLUMN_NAMES``, else the
    first column. Without a header, three columns are read as barcode, x, y.
    """
    require_file(path, "coordinates table")
    sep = table_sep(path)
    head = header_cells(path, sep)
    low = [h.strip().lower() for h in head]
    pair = next(((x, y) for x, y in COORD_NAME_PAIRS if x in low and y in low), None)
    if pair is None:
        if len(head) == 3 and not is_number(head[0]) and is_number(head[1]) and is_number(head[2]):
            bc, x, y = HEADERLESS_COORD_COLUMNS
            try:
                df = pd.read_csv(path, sep=sep, header=None, names=list(HEADERLESS_COORD_COLUMNS), dtype={bc: str})
            except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
                raise InputError(f"{path}: cannot be parsed ({e})") from e
            return _index_by_barcode(df, bc, path, first_line=1), x, y
        raise InputError(f"{path}: no coordinate columns; the header has {head[:10]}, accepted x/y column names: "
                         f"{_ACCEPTED_XY} (or no header and exactly 3 columns barcode, x, y)")
    ix, iy = low.index(pair[0]), low.index(pair[1])
    ib = next((i for i, h in enumerate(low) if h in BARCODE_COLUMN_NAMES and i not in (ix, iy)), 0)
    if ib in (ix, iy):
        raise InputError(f"{path}: no barcode column (the first column is {head[0]!r}, a coordinate)")
    try:
        cols = pd.read_csv(path, sep=sep, nrows=0).columns
        df = pd.read_csv(path, sep=sep, dtype={cols[ib]: str})
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path}: cannot be parsed ({e})") from e
    return _index_by_barcode(df, cols[ib], path, first_line=2), cols[ix], cols[iy]


def _index_by_barcode(df: pd.DataFrame, column: str, path: Path, first_line: int) -> pd.DataFrame:
    barcodes = df.pop(column)
    missing = barcodes.isna().to_numpy()
    if missing.any():
        raise InputError(f"{path}: missing barcode in column {column!r} at line {first_line + int(np.argmax(missing))}")
    df.index = pd.Index(barcodes.astype(str).str.strip().to_numpy())
    check_unique(df.index, file=path)
    return df


# --- counts ----------------------------------------------------------------------------------------
def _second_line(path: Path) -> str:
    with open_text(path) as fh:
        fh.readline()
        return fh.readline().rstrip("\r\n")


def _read_text_counts(path: Path, barcodes: pd.Index, transpose: bool | None):
    sep = table_sep(path)
    head = header_cells(path, sep)
    second = _second_line(path)
    if not second.strip():
        raise InputError(f"{path}: no data rows after the header")
    n_fields = len(next(csv.reader([second], delimiter=sep)))
    col_labels = head if n_fields == len(head) + 1 else head[1:]  # R's write.table omits the corner cell
    if n_fields < 2:
        raise InputError(f"{path}: expected a barcode (or gene) column followed by count columns, found "
                         f"{n_fields} column(s); is the separator {sep!r} right?")
    if transpose is None:
        first = pd.read_csv(path, sep=sep, header=None, skiprows=1, usecols=[0], dtype=str, nrows=2000)[0]
        hits_rows = int(first.isin(barcodes).sum())
        hits_cols = int(pd.Index(col_labels).isin(barcodes).sum())
        transpose = hits_cols > hits_rows
        logg.debug(f"{path.name}: {hits_rows} row labels and {hits_cols} column labels match coordinates "
                   f"-> {'genes x spots' if transpose else 'spots x genes'}")
    blocks, labels, line = [], [], 2
    try:
        for chunk in pd.read_csv(path, sep=sep, header=None, skiprows=1, dtype={0: str},
                                 chunksize=chunk_rows(len(col_labels))):
            rows = chunk[0]
            if rows.isna().any():
                i = int(np.argmax(rows.isna().to_numpy()))
                raise InputError(f"{path}: missing row label (first column) at line {line + i}")
            rows = rows.astype(str).to_numpy()
            block = chunk.iloc[:, 1:]
            if block.shape[1] != len(col_labels):
                raise InputError(f"{path}: {block.shape[1]} count columns but {len(col_labels)} column labels "
                                 "in the header")
            blocks.append(block_to_csr(block, file=path, row_labels=rows, col_labels=col_labels,
                                       first_line_no=line))
            labels.append(rows)
            line += len(chunk)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot be parsed as a {'tab' if sep == chr(9) else 'comma'}-separated table "
                         f"({e})") from e
    X = sp.vstack(blocks, format="csr")
    row_names = pd.Index(np.concatenate(labels))
    col_names = pd.Index([c.strip() for c in col_labels])
    if transpose:
        return X.T.tocsr(), col_names, pd.DataFrame(index=row_names), True
    return X, row_names, pd.DataFrame(index=col_names), False


def _mtx_files(path: Path) -> tuple[Path, Path, Path]:
    if path.is_dir():
        hits = [p for p in sorted(path.iterdir()) if is_mtx_name(p.name)]
        if len(hits) != 1:
            raise InputError(f"{path}: expected one {MtxFile.MATRIX}[.gz], found {[p.name for p in hits]}")
        matrix = hits[0]
    else:
        matrix = path
    prefix = matrix.name[: matrix.name.lower().find(MtxFile.MATRIX)] if MtxFile.MATRIX in matrix.name.lower() else ""

    def find(*names: str) -> Path:
        for name in names:
            for candidate in (prefix + name, prefix + name + GZ_SUFFIX):
                if (matrix.parent / candidate).is_file():
                    return matrix.parent / candidate
        raise InputError(f"{matrix.parent / (prefix + names[0])}[.gz]: not found; a 10x-style MTX directory holds "
                         f"{MtxFile.MATRIX}, {MtxFile.BARCODES} and {' or '.join(MtxFile.FEATURES if n == names[0] else n for n in names)}")

    return matrix, find(MtxFile.BARCODES), find(MtxFile.FEATURES, MtxFile.GENES)


def _read_mtx(path: Path):
    import scipy.io

    matrix, bc_path, feat_path = _mtx_files(path)
    try:
        M = scipy.io.mmread(str(matrix))
    except Exception as e:  # scipy raises ValueError/IndexError/OSError on malformed or non-numeric entries
        raise InputError(f"{matrix}: cannot be read as a Matrix Market file (malformed or non-numeric entries: "
                         f"{e})") from e
    if not sp.issparse(M):
        M = sp.csr_matrix(M)
    if M.dtype.kind not in "iuf":
        raise InputError(f"{matrix}: non-numeric counts (field type {M.dtype})")
    barcodes = pd.read_csv(bc_path, sep="\t", header=None, dtype=str)[0]
    features = pd.read_csv(feat_path, sep="\t", header=None, dtype=str)
    n_bc, n_feat = len(barcodes), len(features)
    if M.shape == (n_feat, n_bc):
        X = sp.csr_matrix(M.T)
    elif M.shape == (n_bc, n_feat):
        X = sp.csr_matrix(M)
    else:
        raise InputError(f"{matrix}: shape {M.shape} matches neither {n_feat} features ({feat_path.name}) x "
                         f"{n_bc} barcodes ({bc_path.name}) nor its transpose")
    names = features[1] if features.shape[1] > 1 else features[0]
    var = pd.DataFrame(index=pd.Index(names.astype(str).to_numpy()))
    if features.shape[1] > 1:
        var[VarCol.GENE_IDS] = features[0].astype(str).to_numpy()
    if features.shape[1] > 2:
        var[VarCol.FEATURE_TYPES] = features[2].astype(str).to_numpy()
    return X, pd.Index(barcodes.astype(str).to_numpy()), var, matrix


def read_table(counts: PathLike, coords: PathLike | None = None, *, transpose: bool | None = None,
               library_id: str | None = None):
    """Read a counts matrix and a coordinates table (Stereo-seq, Slide-seq, STARmap, MERFISH, ... exports).

    Parameters
    ----------
    counts
        A delimited table (``.csv``/``.tsv``/``.txt``, optionally ``.gz``; tab when ``.tsv`` or when the
        header has tabs and no commas): spots x genes with barcodes in the first column, or genes x
        spots with genes in the first column (detected, see ``transpose``). A header lacking its corner
        cell (R's ``write.table``) is accepted. Or a 10x-style MTX: ``matrix.mtx[.gz]`` (or its
        directory) with ``barcodes.tsv[.gz]`` and ``features.tsv[.gz]``/``genes.tsv[.gz]`` beside it
        (a common file-name prefix is allowed). Or, when ``coords`` is ``None``, a directory holding one
        counts file and one coordinates file (see :func:`find_table_pair`).
    coords
        Coordinates table: a barcode column and x/y columns named (case-insensitively) x/y,
        xcoord/ycoord, x_coord/y_coord, coord_x/coord_y, x_centroid/y_centroid, center_x/center_y,
        CenterX_global_px/CenterY_global_px, imagecol/imagerow, pxl_col_in_fullres/pxl_row_in_fullres,
        spatial_x/spatial_y, x_location/y_location or pos_x/pos_y; or no header and exactly three
        columns barcode, x, y. Default: found beside ``counts``.
    transpose
        ``True``: the table is genes x spots; ``False``: spots x genes; ``None``: whichever orientation
        has more labels among the coordinates' barcodes. Ignored for MTX (oriented by its shape).
    library_id
        Value of ``obs['slice']``. Default: the counts file's name without extensions.

    Returns
    -------
    AnnData with one row per barcode present in both files:

    - ``X``, ``layers['counts']``: float32 CSR counts (parsed in blocks of rows: one block is dense at
      a time); ``var['gene_ids', 'feature_types']`` from an MTX features file;
    - ``obs``: the coordinates table's other columns; ``obs['slice']``;
    - ``obsm['spatial']``: float64 (x, y) from the recognised columns, in the file's unit;
    - ``uns['spatialdomains']['read']``: files, columns used, orientation, barcodes dropped.

    Raises
    ------
    InputError
        Missing files, non-numeric, missing or negative counts (naming the column and the row),
        missing coordinate columns (listing accepted names) or values (naming the row), duplicated
        barcodes, or too few barcodes shared between the two files (saying how many matched).

    Notes
    -----
    Files read: ``counts`` (or the MTX trio) and ``coords``.
    """
    counts = Path(counts)
    if coords is None:
        if not counts.exists():
            raise InputError(f"{counts}: counts table not found")
        counts, coords = find_table_pair(counts)
    coords = Path(coords)
    if not counts.exists():
        raise InputError(f"{counts}: counts table not found")
    start = logg.info(f"reading {Format.TABLE} from {counts} + {coords.name}")
    coord_df, xcol, ycol = read_coordinates(coords)
    dropped: dict = {}
    if is_mtx_name(counts.name) or (counts.is_dir() and any(is_mtx_name(p.name) for p in counts.iterdir())):
        X, obs_names, var, counts_file = _read_mtx(counts)
        orientation = "mtx"
    else:
        require_file(counts, "counts table")
        X, obs_names, var, transposed = _read_text_counts(counts, coord_df.index, transpose)
        counts_file = counts
        orientation = "genes x spots" if transposed else "spots x genes"
    check_unique(obs_names, file=counts_file)
    found = match_barcodes(obs_names, coord_df.index, matrix_file=counts_file, coord_file=coords)
    keep = np.flatnonzero(found)
    import anndata as ad

    adata = ad.AnnData(X=X[keep], obs=pd.DataFrame(index=obs_names[keep]), var=var)
    if VarCol.FEATURE_TYPES in adata.var:
        ftypes = adata.var[VarCol.FEATURE_TYPES].to_numpy()
        adata, dropped = split_features(adata, {slug(t): ftypes == t for t in pd.unique(ftypes)
                                                if t != TenxH5.GENE_EXPRESSION})
    sub = coord_df.reindex(adata.obs_names)
    xy = np.column_stack([numeric_column(sub[c], file=coords, column=str(c), what="coordinate") for c in (xcol, ycol)])
    for col in sub.columns:
        if col not in (xcol, ycol):
            adata.obs[str(col)] = sub[col].to_numpy()
    lib = library_id or (counts_file.parent.resolve().name if orientation == "mtx"
                         else _bare(counts_file.name).rsplit(".", 1)[0])
    details = {
        "files": [str(counts_file), str(coords)],
        "orientation": orientation,
        "coordinate_columns": [str(xcol), str(ycol)],
        "dropped_spots": {"not_in_coordinates": int((~found).sum())},
        "dropped_features": dropped,
    }
    adata = finalize(adata, xy=xy, library_id=lib, fmt=Format.TABLE, source=counts_file, unit=Unit.AS_IN_FILE,
                     file=counts_file, details=details)
    logg.info(f"    finished: {adata.n_obs} spots x {adata.n_vars} genes", time=start,
              deep="added X, layers['counts'], obs (coordinate table columns, 'slice'), obsm['spatial'], "
                   "uns['spatialdomains']['read']")
    return adata
