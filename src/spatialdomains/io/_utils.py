"""Helpers shared by the readers: file checks, safe archive extraction, validated parsing, the contract."""

from __future__ import annotations

import csv
import gzip
import io
import os
import tarfile
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import _logging as logg
from .._constants import COUNTS_LAYER, SLICE_KEY, SPATIAL
from .._utils import InputError, record
from ._constants import (
    ARCHIVE_SUFFIXES,
    DROPPED_OBS_COLUMN,
    GZ_SUFFIX,
    MIN_BARCODE_MATCH,
    READ_STEP,
    TAB_SUFFIXES,
    TABLE_CHUNK_VALUES,
    VarCol,
)

PathLike = str | os.PathLike


# --- paths ---------------------------------------------------------------------------------------
def require_file(path: Path, what: str, hint: str = "") -> Path:
    """Raise :class:`InputError` naming ``path`` when it is not a file."""
    if not path.is_file():
        where = "is a directory, not a file" if path.is_dir() else "not found"
        raise InputError(f"{path}: {what} {where}{'; ' + hint if hint else ''}")
    return path


def strip_gz(name: str) -> str:
    return name[: -len(GZ_SUFFIX)] if name.lower().endswith(GZ_SUFFIX) else name


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_stem(path: Path) -> str:
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _check_member(archive: Path, member: tarfile.TarInfo, dest: Path) -> None:
    name = member.name
    parts = Path(name).parts
    if name.startswith(("/", "\\")) or os.path.isabs(name) or ".." in parts:
        raise InputError(f"{archive}: refusing to extract {name!r}: the path leaves the archive's directory")
    if member.issym() or member.islnk():
        raise InputError(f"{archive}: refusing to extract link {name!r} -> {member.linkname!r}")
    if not (member.isfile() or member.isdir()):
        raise InputError(f"{archive}: refusing to extract {name!r}: not a regular file or directory")
    target = (dest / name).resolve()
    if dest != target and dest not in target.parents:
        raise InputError(f"{archive}: refusing to extract {name!r}: the path leaves the archive's directory")


_TMP_PREFIX = "spatialdomains-"


def shown_path(path: Path | str, archive: Path | None) -> str:
    """``path`` for messages and records: inside an extracted archive, ``<archive>:<path in archive>``."""
    if archive is None:
        return str(path)
    parts = Path(path).parts
    for i, part in enumerate(parts):
        if part.startswith(_TMP_PREFIX):
            return f"{archive}:{Path(*parts[i + 1:]).as_posix()}" if i + 1 < len(parts) else str(archive)
    return str(path)


@contextmanager
def extracted(archive: Path) -> Iterator[Path]:
    """Extract a ``.tar(.gz)`` into a temporary directory and yield its top directory.

    Absolute paths, ``..`` components, links and device files are refused with :class:`InputError`
    (no path traversal). A chain of single sub-directories at the top is descended. The directory is
    removed on exit, so everything must be read into memory inside the block.
    """
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise InputError(f"{archive}: not a readable tar archive ({e})") from e
    with tar, tempfile.TemporaryDirectory(prefix=_TMP_PREFIX) as tmp:
        dest = Path(tmp).resolve()
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise InputError(f"{archive}: truncated or corrupt tar archive ({e})") from e
        for member in members:
            _check_member(archive, member, dest)
        logg.debug(f"extracting {len(members)} entries of {archive} to {dest}")
        try:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - Python < 3.11.4; members were checked above
                tar.extractall(dest, members=members)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise InputError(f"{archive}: could not extract ({e})") from e
        root = dest
        while True:
            entries = [p for p in root.iterdir() if not p.name.startswith(".")]
            if len(entries) == 1 and entries[0].is_dir():
                root = entries[0]
            else:
                break
        try:
            yield root
        except InputError as e:  # name the archive, not the temporary directory, in messages
            msg = str(e).replace(f"{dest}{os.sep}", f"{archive}:").replace(str(dest), f"{archive}:")
            raise InputError(msg) from e


# --- text tables ---------------------------------------------------------------------------------
def open_text(path: Path):
    if path.name.lower().endswith(GZ_SUFFIX):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace", newline="")


def first_line(path: Path) -> str:
    try:
        with open_text(path) as fh:
            return fh.readline().rstrip("\r\n")
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise InputError(f"{path}: cannot be read ({e})") from e


def table_sep(path: Path) -> str:
    """``"\\t"`` for ``.tsv`` files or when the first line has tabs but no commas; else ``","``."""
    if strip_gz(path.name.lower()).endswith(TAB_SUFFIXES):
        return "\t"
    line = first_line(path)
    return "\t" if "\t" in line and "," not in line else ","


def header_cells(path: Path, sep: str) -> list[str]:
    """The first row of a delimited file, parsed with quoting rules."""
    line = first_line(path)
    if not line.strip():
        raise InputError(f"{path}: the file is empty (no header row)")
    return next(csv.reader([line], delimiter=sep))


def is_number(text: str) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def numeric_column(values: pd.Series, *, file: Path, column: str, what: str = "value",
                   line_offset: int | None = None) -> np.ndarray:
    """``values`` as float64; :class:`InputError` naming the file, column and first bad row otherwise.

    Non-numeric text and missing values (NaN, empty) are both refused. ``values.index`` holds the row
    labels used in the message (barcodes); ``line_offset`` adds the 1-based line number in the file.
    """
    coerced = pd.to_numeric(values, errors="coerce")
    bad = coerced.isna().to_numpy() | ~np.isfinite(coerced.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        i = int(np.argmax(bad))
        raw = values.iloc[i]
        where = f"row {values.index[i]!r}" + (f" (line {line_offset + i})" if line_offset is not None else "")
        if pd.isna(raw) or (isinstance(raw, str) and not raw.strip()):
            problem = f"missing {what}"
        elif is_number(str(raw)):
            problem = f"non-finite {what} {raw!r}"
        else:
            problem = f"non-numeric {what} {raw!r}"
        n_bad = int(bad.sum())
        raise InputError(f"{file}: {problem} in column {column!r} at {where}"
                         + (f" ({n_bad} bad rows in this column)" if n_bad > 1 else ""))
    return coerced.to_numpy(dtype=np.float64)


def block_to_csr(block: pd.DataFrame, *, file: Path, row_labels: Sequence, col_labels: Sequence,
                 first_line_no: int) -> sp.csr_matrix:
    """Validate one dense block of a text count table and return it as float32 CSR.

    ``row_labels``/``col_labels`` name the block's rows and columns in messages; ``first_line_no``
    is the 1-based line of the block's first row. Refuses non-numeric, missing and negative counts.
    """
    for j, col in enumerate(block.columns):
        dtype = block[col].dtype
        if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            series = pd.Series(block[col].to_numpy(), index=pd.Index(row_labels))
            numeric_column(series, file=file, column=str(col_labels[j]), what="count", line_offset=first_line_no)
    arr = block.to_numpy(dtype=np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        problem = "missing count" if np.isnan(arr[r, c]) else f"non-finite count {arr[r, c]}"
        raise InputError(f"{file}: {problem} in column {col_labels[c]!r} at row {row_labels[r]!r} "
                         f"(line {first_line_no + r})")
    neg = arr < 0
    if neg.any():
        r, c = np.argwhere(neg)[0]
        raise InputError(f"{file}: negative count {arr[r, c]:g} in column {col_labels[c]!r} at row "
                         f"{row_labels[r]!r} (line {first_line_no + r}); counts must be >= 0")
    return sp.csr_matrix(arr)


def chunk_rows(n_cols: int) -> int:
    """Rows per parsed block so that a dense block holds about ``TABLE_CHUNK_VALUES`` values."""
    return max(1, TABLE_CHUNK_VALUES // max(n_cols, 1))


# --- counts ----------------------------------------------------------------------------------------
def as_counts_csr(X, *, file: Path, obs_names: Sequence, var_names: Sequence, where: str = "") -> sp.csr_matrix:
    """``X`` as float32 CSR with sorted indices; refuses negative and non-finite values, naming the entry."""
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        if X.dtype != np.float32:
            X = X.astype(np.float32)
    else:
        X = np.asarray(X)
        if X.dtype.kind not in "iuf":
            raise InputError(f"{file}: non-numeric counts{where} (dtype {X.dtype})")
        X = sp.csr_matrix(X.astype(np.float32, copy=False))
    X.sort_indices()
    data = X.data
    for bad, problem in ((~np.isfinite(data), "non-finite count"), (data < 0, "negative count")):
        if bad.any():
            i = int(np.argmax(bad))
            row = int(np.searchsorted(X.indptr, i, side="right") - 1)
            col = int(X.indices[i])
            raise InputError(f"{file}: {problem} {data[i]:g}{where} for spot {obs_names[row]!r}, gene "
                             f"{var_names[col]!r}; readers expect raw counts >= 0")
    return X


def use_raw_counts(adata, *, file: Path) -> str:
    """Put the raw counts of an AnnData read from ``file`` in ``X`` (float32 CSR); return where they came from.

    ``layers['counts']`` when present, else ``X`` (a warning says so when ``X`` holds non-integers).
    Negative or non-finite values raise :class:`InputError` naming the spot and gene.
    """
    if COUNTS_LAYER in adata.layers:
        source, counts = f"layers['{COUNTS_LAYER}']", adata.layers[COUNTS_LAYER]
    elif adata.X is not None:
        source, counts = "X", adata.X
    else:
        raise InputError(f"{file}: no counts (neither layers['{COUNTS_LAYER}'] nor X)")
    counts = as_counts_csr(counts, file=file, obs_names=adata.obs_names, var_names=adata.var_names,
                           where=f" in {source}")
    if source == "X" and counts.nnz and not np.array_equal(counts.data, np.round(counts.data)):
        logg.warning(f"{file}: X holds non-integer values and there is no layers['{COUNTS_LAYER}']; reading X as "
                     "raw counts (store raw counts in layers['counts'] if X is normalised)")
    adata.X = counts
    return source


def split_features(adata, groups: dict[str, np.ndarray]) -> tuple[Any, dict[str, dict]]:
    """Drop feature groups (boolean masks over ``var``) from ``adata``; keep what was dropped on record.

    Each group's per-spot total goes to ``obs['dropped_<group>_counts']``; the returned dict holds per
    group the number of features, their names and their total counts (for the read record).
    """
    drop = np.zeros(adata.n_vars, dtype=bool)
    dropped: dict[str, dict] = {}
    X = sp.csr_matrix(adata.X)
    for group, mask in groups.items():
        mask = np.asarray(mask, dtype=bool) & ~drop
        if not mask.any():
            continue
        per_spot = np.asarray(X[:, np.flatnonzero(mask)].sum(axis=1)).ravel()
        adata.obs[DROPPED_OBS_COLUMN.format(group)] = per_spot.astype(np.float64)
        dropped[group] = {
            "n_features": int(mask.sum()),
            "names": [str(n) for n in adata.var_names[mask]],
            "total_counts": float(per_spot.sum()),
        }
        drop |= mask
    if drop.any():
        adata = adata[:, ~drop].copy()
    return adata, dropped


def slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text.strip().lower()).strip("_") or "other"


# --- barcodes -------------------------------------------------------------------------------------
def check_unique(names: pd.Index, *, file: Path, what: str = "barcode") -> None:
    if not names.is_unique:
        dup = names[names.duplicated()]
        raise InputError(f"{file}: {len(dup)} duplicated {what}(s), first {dup[0]!r}; {what}s must be unique")


def match_barcodes(matrix_names: pd.Index, coord_names: pd.Index, *, matrix_file: Path,
                   coord_file: Path) -> np.ndarray:
    """Boolean mask over ``matrix_names`` of barcodes that have coordinates.

    Refuses the pair with :class:`InputError` (saying how many matched, with examples of each side)
    when fewer than ``MIN_BARCODE_MATCH`` of the matrix's barcodes are in the coordinates file; logs a
    warning with the count otherwise when some are missing.
    """
    found = np.asarray(matrix_names.isin(coord_names))
    n, n_found = len(matrix_names), int(found.sum())
    if n == 0:
        raise InputError(f"{matrix_file}: the count matrix has no barcodes")
    if n_found < MIN_BARCODE_MATCH * n or n_found == 0:
        ex_m = ", ".join(repr(str(b)) for b in matrix_names[:3])
        ex_c = ", ".join(repr(str(b)) for b in coord_names[:3])
        raise InputError(
            f"{matrix_file} and {coord_file} do not match: only {n_found} of the matrix's {n} barcodes have "
            f"coordinates (need at least {MIN_BARCODE_MATCH:.0%}); matrix barcodes look like {ex_m}, "
            f"coordinate barcodes like {ex_c}"
        )
    if n_found < n:
        logg.warning(f"{n - n_found} of {n} barcodes of {matrix_file} have no coordinates in {coord_file}; "
                     "they are dropped (recorded in uns['spatialdomains']['read'])")
    return found


# --- images --------------------------------------------------------------------------------------
def load_image(path: Path) -> np.ndarray:
    """An RGB ``uint8`` image (h, w, 3) read with OpenCV; :class:`InputError` if it cannot be decoded."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"{path}: image file cannot be decoded (corrupt or not an image)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# --- the contract ---------------------------------------------------------------------------------
def finalize(adata, *, xy: np.ndarray, library_id: str, fmt: str, source: Path, unit: str,
             file: Path, details: dict[str, Any] | None = None):
    """Give ``adata`` the reader contract shared by every format.

    Writes ``X`` (float32 CSR counts), ``layers['counts']`` (a copy: later steps normalise ``X`` in
    place), ``var['gene_symbols']`` (names before ``var_names_make_unique``), ``obs['slice']``,
    ``obsm['spatial']`` (float64 (x, y)) and ``uns['spatialdomains']['read']``.
    """
    X = as_counts_csr(adata.X, file=file, obs_names=adata.obs_names, var_names=adata.var_names)
    adata.X = X
    adata.layers[COUNTS_LAYER] = X.copy()
    if VarCol.GENE_SYMBOLS not in adata.var:
        adata.var[VarCol.GENE_SYMBOLS] = adata.var_names.astype(str)
    adata.var_names = adata.var_names.astype(str)
    adata.obs_names = adata.obs_names.astype(str)
    adata.var_names_make_unique()
    adata.obs[SLICE_KEY] = pd.Categorical([str(library_id)] * adata.n_obs, categories=[str(library_id)])
    xy = np.ascontiguousarray(np.asarray(xy, dtype=np.float64))
    if xy.shape != (adata.n_obs, 2):
        raise InputError(f"{file}: coordinates have shape {xy.shape}, expected ({adata.n_obs}, 2)")
    adata.obsm[SPATIAL] = xy
    entry = {
        "format": fmt,
        "source": str(source),
        "library_id": str(library_id),
        "coordinate_unit": unit,
        "n_spots": int(adata.n_obs),
        "n_genes": int(adata.n_vars),
    }
    entry.update(details or {})
    record(adata, READ_STEP, entry)
    return adata
