"""The dispatcher: any supported input -> the AnnData contract, plus ground truth and the H&E path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .. import _logging as logg
from .._constants import PLATFORMS, SLICE_KEY, SPATIAL, TRUTH_KEY, UNS_KEY
from .._utils import InputError
from ._constants import (
    FORMAT_DESCRIPTION,
    GENERIC_FORMATS,
    GZ_SUFFIX,
    H5_SUFFIX,
    H5AD_SUFFIX,
    HD_SQUARE_RE,
    PLATFORM_FORMAT,
    READ_STEP,
    CosmxFile,
    Format,
    TenxFile,
    UnsSpatial,
    XeniumFile,
)
from ._cosmx import read_cosmx
from ._h5ad import read_h5ad
from ._spatialdata import is_spatialdata_store, read_spatialdata
from ._table import is_mtx_name, is_table_name, read_table
from ._tenx import read_10x_h5, read_visium, read_visium_hd
from ._utils import PathLike, archive_stem, extracted, first_line, is_archive, shown_path, table_sep
from ._xenium import read_xenium

#: format -> reader; every reader takes ``(path, *, library_id=None)``
READERS = {
    Format.VISIUM: read_visium,
    Format.VISIUM_HD: read_visium_hd,
    Format.TENX_H5: read_10x_h5,
    Format.H5AD: read_h5ad,
    Format.XENIUM: read_xenium,
    Format.COSMX: read_cosmx,
    Format.TABLE: read_table,
    Format.SPATIALDATA: read_spatialdata,
}

_LAYOUTS = (
    "Space Ranger outs/ (filtered_feature_bc_matrix.h5 + spatial/), Visium HD binned_outputs/square_XXXum/, "
    "a 10x .h5 with spatial/ beside it, .h5ad, a Xenium dir (cell_feature_matrix.h5 + cells.parquet), CosMx "
    "flat files (*exprMat_file.csv + *metadata_file.csv), a counts table or matrix.mtx with a coordinates "
    "table, a SpatialData .zarr store, or a .tar.gz of any of these directories"
)


def _is_xenium_dir(path: Path) -> bool:
    return any((path / n).is_file() for n in (XeniumFile.MATRIX_H5, XeniumFile.CELLS_PARQUET, XeniumFile.CELLS_CSV,
                                              XeniumFile.EXPERIMENT))


def _is_cosmx_name(name: str) -> bool:
    return name.endswith((CosmxFile.EXPR_SUFFIX, CosmxFile.EXPR_SUFFIX + GZ_SUFFIX))


def detect_format(path: PathLike) -> str:
    """Tell the format of ``path`` from its name and contents (archives must be extracted first).

    Files: ``*.h5ad`` -> ``h5ad``; ``cell_feature_matrix.h5`` with a cells table beside it ->
    ``xenium``; other ``*.h5`` -> ``10x_h5``; ``*exprMat_file.csv[.gz]`` -> ``cosmx``; other tables
    and ``*.mtx[.gz]`` -> ``table``. Directories: ``square_XXXum/``, a ``binned_outputs/`` inside (or
    inside ``outs/``), or ``spatial/tissue_positions.parquet`` -> ``visium_hd``; ``spatial/`` (directly
    or in ``outs/``) -> ``visium``; Xenium files -> ``xenium``; a ``*exprMat_file.csv`` -> ``cosmx``;
    tables or MTX -> ``table``; a zarr group with SpatialData's element groups -> ``spatialdata``.

    Parameters
    ----------
    path
        A file or directory (not an archive).

    Returns
    -------
    One of ``FORMATS``: ``visium``, ``visium_hd``, ``10x_h5``, ``h5ad``, ``xenium``, ``cosmx``, ``table``,
    ``spatialdata``.

    Raises
    ------
    InputError
        The path does not exist, or nothing recognisable is there (listing the layouts understood).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: input data not found")
    name = path.name
    if path.is_file():
        low = name.lower()
        if low.endswith(H5AD_SUFFIX):
            return Format.H5AD
        if low.endswith(H5_SUFFIX):
            if name == XeniumFile.MATRIX_H5 and _is_xenium_dir(path.parent) and (
                    (path.parent / XeniumFile.CELLS_PARQUET).is_file() or (path.parent / XeniumFile.CELLS_CSV).is_file()):
                return Format.XENIUM
            return Format.TENX_H5
        if _is_cosmx_name(name):
            return Format.COSMX
        if is_table_name(name) or is_mtx_name(name):
            return Format.TABLE
        raise InputError(f"{path}: unrecognised file type; expected {_LAYOUTS}")
    if is_spatialdata_store(path):
        return Format.SPATIALDATA
    for d in (path, path / TenxFile.OUTS_DIR):
        if HD_SQUARE_RE.match(d.name) or (d / TenxFile.BINNED_DIR).is_dir() or d.name == TenxFile.BINNED_DIR \
                or (d / TenxFile.SPATIAL_DIR / TenxFile.POSITIONS_PARQUET).is_file():
            return Format.VISIUM_HD
    for d in (path, path / TenxFile.OUTS_DIR):
        if (d / TenxFile.SPATIAL_DIR).is_dir():
            return Format.VISIUM
    if _is_xenium_dir(path) or _is_xenium_dir(path / TenxFile.OUTS_DIR):
        return Format.XENIUM
    files = [p for p in path.iterdir() if p.is_file()]
    if any(_is_cosmx_name(p.name) for p in files):
        return Format.COSMX
    if any(is_table_name(p.name) or is_mtx_name(p.name) for p in files):
        return Format.TABLE
    raise InputError(f"{path}: cannot tell the data format (files: {sorted(p.name for p in files)[:10]}); "
                     f"expected {_LAYOUTS}")


def _resolve_format(path: Path, platform: str | None) -> str:
    expected = PLATFORM_FORMAT.get(platform) if platform else None
    try:
        fmt = detect_format(path)
    except InputError:
        if expected is None:
            raise
        return expected  # the platform's reader names the files it expected
    if expected is None or fmt == expected:
        return fmt
    if fmt == Format.TABLE and path.is_dir():
        return expected  # a directory of stray tables: let the platform's reader say what is missing
    if fmt in GENERIC_FORMATS:
        return fmt
    raise InputError(f"{path}: the sample sheet says platform {platform!r} but the data look like "
                     f"{FORMAT_DESCRIPTION[fmt]} ({fmt}); fix the platform column or the path")


def _reader_path(path: Path, fmt: str) -> Path:
    if fmt == Format.XENIUM and path.is_dir() and not (path / XeniumFile.MATRIX_H5).exists() \
            and (path / TenxFile.OUTS_DIR).is_dir():
        return path / TenxFile.OUTS_DIR
    return path


# --- truth ----------------------------------------------------------------------------------------
def _labels(values: pd.Series) -> pd.Categorical:
    """Labels as a str categorical; NaN (and empty strings) stay missing; 3.0 -> "3"."""
    s = pd.Series(values).reset_index(drop=True)
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    missing = s.isna().to_numpy()
    present = s[~missing]
    numeric = pd.api.types.is_float_dtype(s.dtype) or (
        s.dtype == object and len(present) > 0 and all(isinstance(v, (float, np.floating)) for v in present))
    if numeric and np.all(np.mod(present.to_numpy(dtype=float), 1) == 0):
        s = s.astype(float).astype("Int64")
    out = np.array([str(v).strip() if not m else "" for v, m in zip(s.to_numpy(dtype=object), missing)], dtype=object)
    out[missing | (out == "")] = np.nan
    return pd.Categorical(out)


def _read_truth_file(path: Path, obs_names: pd.Index) -> tuple[pd.Series, int]:
    if not first_line(path).strip():
        raise InputError(f"{path}: empty truth file; expected two columns barcode,label")
    sep = table_sep(path)
    try:
        df = pd.read_csv(path, sep=sep, header=None, dtype=str, skip_blank_lines=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot be parsed ({e})") from e
    if df.shape[1] != 2:
        raise InputError(f"{path}: expected 2 columns (barcode, label), found {df.shape[1]}")
    # a first row whose barcode is not in the data is a header (a data row with an unknown barcode would
    # look the same; it is skipped rather than counted)
    if str(df.iat[0, 0]).strip() not in obs_names:
        df = df.iloc[1:]
    barcodes = df[0].astype(str).str.strip()
    labels = df[1]
    dup = barcodes.duplicated(keep=False)
    if dup.any():
        conflicts = df[dup].groupby(barcodes[dup])[1].nunique(dropna=False)
        conflicts = conflicts[conflicts > 1]
        if len(conflicts):
            raise InputError(f"{path}: barcode {conflicts.index[0]!r} has conflicting labels "
                             f"({len(conflicts)} barcodes with more than one label)")
        keep = ~barcodes.duplicated()
        barcodes, labels = barcodes[keep], labels[keep]
    series = pd.Series(labels.to_numpy(), index=pd.Index(barcodes.to_numpy()))
    unknown = int((~series.index.isin(obs_names)).sum())
    return series.reindex(obs_names), unknown


def attach_truth(adata, truth: str | os.PathLike) -> dict:
    """Write ``obs['truth']`` from an obs column or a ``barcode,label`` file; return a summary.

    Parameters
    ----------
    adata
        The slice; its ``obs_names`` are matched against the file's barcodes.
    truth
        An ``obs`` column name (copied), or else a 2-column CSV/TSV file (header optional: a first row
        whose barcode is not in the data is taken as a header). Barcodes of the file absent from the
        data are counted and logged as a warning; spots without a label get NaN.

    Returns
    -------
    ``{'source', 'n_labelled', 'n_unlabelled', 'n_labels', 'n_truth_barcodes_not_in_data'}``. Writes
    ``obs['truth']``: str categorical (``3.0`` -> ``"3"``), NaN where unlabelled.

    Raises
    ------
    InputError
        ``truth`` is neither a column nor a file; the file has other than 2 columns, conflicting labels
        for a barcode, or labels none of the data's spots.
    """
    if isinstance(truth, str) and truth in adata.obs.columns:
        values, source, unknown = adata.obs[truth], f"obs[{truth!r}]", 0
    else:
        path = Path(truth)
        if not path.is_file():
            raise InputError(f"truth {str(truth)!r} is neither a column of the data (obs columns: "
                             f"{list(adata.obs.columns)[:20]}) nor an existing barcode,label file")
        values, unknown = _read_truth_file(path, adata.obs_names)
        source = str(path)
        if unknown:
            logg.warning(f"{path}: {unknown} barcodes of the truth file are not in the data; they are ignored")
    cat = _labels(values)
    adata.obs[TRUTH_KEY] = pd.Categorical(cat, categories=cat.categories)
    n_labelled = int(adata.obs[TRUTH_KEY].notna().sum())
    if n_labelled == 0:
        raise InputError(f"truth {source}: no spot of the data has a label (check that the barcodes match)")
    return {"source": source, "n_labelled": n_labelled, "n_unlabelled": int(adata.n_obs - n_labelled),
            "n_labels": int(len(cat.categories)), "n_truth_barcodes_not_in_data": unknown}


# --- the dispatcher --------------------------------------------------------------------------------
def read(path: PathLike, *, platform: str | None = None, truth: str | os.PathLike | None = None,
         library_id: str | None = None, image: PathLike | None = None):
    """Read any supported spatial dataset into the one AnnData contract.

    Parameters
    ----------
    path
        Data in any layout of :func:`detect_format`, or a ``.tar.gz``/``.tgz``/``.tar`` of a directory
        (extracted to a temporary directory with path-traversal checks, read, then removed).
    platform
        Sample-sheet platform (one of ``spatialdomains._constants.PLATFORMS``). ``visium``,
        ``visium_hd``, ``xenium`` and ``cosmx`` pick their reader when the path is ambiguous and refuse
        data that look like another platform's; an ``.h5ad``, a 10x ``.h5`` or tables are accepted for
        every platform. The others (``stereoseq``, ``slideseq``, ``merfish``, ``starmap``, ``other``)
        read what the path holds.
    truth
        An ``obs`` column name, or a ``barcode,label`` file (CSV/TSV, header optional).
    library_id
        Slice id (sample-sheet ``sample``): ``obs['slice']`` and the ``uns['spatial']`` key.
    image
        Full-resolution H&E image (TIFF/PNG/JPEG). Not loaded; its absolute path is stored in
        ``uns['spatial'][library_id]['metadata']['source_image_path']``.

    Returns
    -------
    AnnData with ``X`` and ``layers['counts']`` (float32 CSR raw counts), ``obs['slice']``,
    ``obsm['spatial']`` (float64 (x, y)), ``obs['truth']`` (str categorical, NaN = unlabelled) when
    ``truth`` is given, ``uns['spatial'][library_id]`` when images, scale factors or ``image`` exist,
    and ``uns['spatialdomains']['read']`` (format, files, unit, drops, platform, truth summary).

    Raises
    ------
    InputError
        Unknown platform, missing ``path``/``image``/truth file, or any reader error (naming the file
        and the problem).

    Notes
    -----
    Files read: those of the format's reader (:func:`read_visium`, :func:`read_visium_hd`,
    :func:`read_10x_h5`, :func:`read_h5ad`, :func:`read_xenium`, :func:`read_cosmx`,
    :func:`read_table`, :func:`read_spatialdata`) and the truth file.
    """
    platform = platform or None  # an empty sample-sheet cell means "not given"
    if platform is not None and platform not in PLATFORMS:
        raise InputError(f"unknown platform {platform!r}; use one of {', '.join(PLATFORMS)}")
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: input data not found")
    image_path = None
    if image is not None:
        image_path = Path(image)
        if not image_path.is_file():
            raise InputError(f"{image_path}: H&E image not found")
    if is_archive(path):
        with extracted(path) as root:
            fmt = _resolve_format(root, platform)
            target = _reader_path(root, fmt)
            adata = READERS[fmt](target, library_id=library_id or archive_stem(path))
            adata.uns[UNS_KEY][READ_STEP]["source"] = str(path)
            adata.uns[UNS_KEY][READ_STEP]["files"] = [
                shown_path(f, path) for f in adata.uns[UNS_KEY][READ_STEP].get("files", [])
            ]
    else:
        fmt = _resolve_format(path, platform)
        adata = READERS[fmt](_reader_path(path, fmt), library_id=library_id)
    lib = str(adata.obs[SLICE_KEY].cat.categories[0]) if adata.n_obs else str(library_id)
    entry = adata.uns[UNS_KEY][READ_STEP]
    if platform is not None:
        entry["platform"] = platform
    if image_path is not None:
        spatial = adata.uns.setdefault(SPATIAL, {})
        slot = spatial.setdefault(lib, {UnsSpatial.IMAGES: {}, UnsSpatial.SCALEFACTORS: {}, UnsSpatial.METADATA: {}})
        slot.setdefault(UnsSpatial.METADATA, {})[UnsSpatial.SOURCE_IMAGE_PATH] = str(image_path.resolve())
        entry["image"] = str(image_path.resolve())
    if truth is not None:
        entry["truth"] = attach_truth(adata, truth)
    elif TRUTH_KEY in adata.obs:
        adata.obs[TRUTH_KEY] = _labels(adata.obs[TRUTH_KEY])
    return adata
