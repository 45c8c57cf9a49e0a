"""10x Genomics Space Ranger readers: Visium, Visium HD bins, and a bare 10x ``.h5`` with ``spatial/``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import _logging as logg
from .._constants import SPATIAL
from .._utils import InputError
from ._constants import (
    H5_SUFFIX,
    HD_DEFAULT_BIN_UM,
    HD_REFUSED_BIN_UM,
    HD_SQUARE_DIR,
    HD_SQUARE_RE,
    IMAGE_FILES,
    PARQUET_SUFFIX,
    POSITION_COLUMNS,
    POSITION_OBS_COLUMNS,
    POSITIONS_FILES,
    SPACERANGER_HD,
    SPACERANGER_VISIUM,
    SPOTS_X,
    SPOTS_Y,
    TENX_H5_METADATA_ATTRS,
    TENX_H5_REQUIRED,
    Format,
    TenxFile,
    TenxH5,
    Unit,
    UnsSpatial,
    VarCol,
    VisiumCol,
)
from ._utils import (
    PathLike,
    archive_stem,
    as_counts_csr,
    check_unique,
    extracted,
    finalize,
    first_line,
    is_archive,
    load_image,
    match_barcodes,
    numeric_column,
    require_file,
    shown_path,
    slug,
    split_features,
)

_SLOTS = ("X, layers['counts'], obs['in_tissue', 'array_row', 'array_col', 'slice'], obsm['spatial'], "
          "uns['spatial'], uns['spatialdomains']['read']")


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [_decode(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- the h5 ---------------------------------------------------------------------------------------
def inspect_10x_h5(path: Path) -> dict[str, Any]:
    """Check that ``path`` is a readable 10x feature-barcode h5 and return its file attributes.

    Checks, before the matrix is loaded: the file opens as HDF5; the Cell Ranger >= 3 datasets
    (``matrix/{barcodes,data,indices,indptr,shape,features/{id,name,feature_type}}``) exist; ``data``
    holds numbers; ``shape``, ``indptr``, ``barcodes`` and ``features`` agree. Legacy (Cell Ranger 2)
    files, with one group per genome, are left to scanpy.
    """
    import h5py

    require_file(path, "10x count matrix (.h5)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise InputError(f"{path}: not a readable HDF5 file ({e})") from e
    with f:
        attrs = {k: _decode(v) for k, v in f.attrs.items()}
        if TenxH5.MATRIX not in f:
            if not len(f.keys()):
                raise InputError(f"{path}: empty HDF5 file, expected a 10x group '{TenxH5.MATRIX}/'")
            return attrs  # Cell Ranger 2 layout: one group per genome
        g = f[TenxH5.MATRIX]
        missing = [name for name in TENX_H5_REQUIRED if name not in g]
        if missing:
            raise InputError(f"{path}: not a 10x (Cell Ranger >= 3) feature-barcode h5: missing dataset(s) "
                             + ", ".join(f"{TenxH5.MATRIX}/{m}" for m in missing))
        data = g[TenxH5.DATA]
        if data.dtype.kind not in "iuf":
            raise InputError(f"{path}: non-numeric counts: {TenxH5.MATRIX}/{TenxH5.DATA} holds {data.dtype} "
                             "values, expected integers or floats")
        shape = tuple(int(s) for s in g[TenxH5.SHAPE][()])
        n_bc = g[TenxH5.BARCODES].shape[0]
        n_feat = g[f"{TenxH5.FEATURES}/{TenxH5.ID}"].shape[0]
        n_ptr = g[TenxH5.INDPTR].shape[0]
        if len(shape) != 2 or shape != (n_feat, n_bc) or n_ptr != n_bc + 1 \
                or g[TenxH5.INDICES].shape[0] != data.shape[0]:
            raise InputError(f"{path}: inconsistent 10x matrix: shape {shape}, {n_feat} features, {n_bc} barcodes, "
                             f"{n_ptr} indptr entries, {g[TenxH5.INDICES].shape[0]} indices, {data.shape[0]} values")
    return attrs


def keep_gene_expression(adata, path: Path):
    """Check the counts of a 10x matrix read from ``path`` and keep only its ``Gene Expression`` features.

    Symbols go to ``var['gene_symbols']`` before ``var_names`` are made unique. Other feature types
    leave their per-spot totals in ``obs['dropped_<type>_counts']``. Returns ``(adata, dropped)``.
    """
    adata.var[VarCol.GENE_SYMBOLS] = adata.var_names.astype(str)
    adata.var_names_make_unique()
    # every stored value is checked, also those of spots or features dropped below
    adata.X = as_counts_csr(adata.X, file=path, obs_names=adata.obs_names, var_names=adata.var_names)
    dropped: dict[str, dict] = {}
    if VarCol.FEATURE_TYPES in adata.var:
        ftypes = adata.var[VarCol.FEATURE_TYPES].astype(str).to_numpy()
        groups = {slug(t): ftypes == t for t in pd.unique(ftypes) if t != TenxH5.GENE_EXPRESSION}
        if groups and not (ftypes == TenxH5.GENE_EXPRESSION).any():
            raise InputError(f"{path}: no '{TenxH5.GENE_EXPRESSION}' features (found types: "
                             f"{sorted(set(ftypes))})")
        adata, dropped = split_features(adata, groups)
        if dropped:
            logg.info(f"    removed {sum(d['n_features'] for d in dropped.values())} non gene-expression "
                      f"features of {path.name} ({', '.join(dropped)}); per-spot totals kept in obs")
    return adata, dropped


def read_10x_counts(path: Path):
    """Read a 10x h5 with :func:`scanpy.read_10x_h5`; keep only ``Gene Expression`` features.

    Other feature types (antibody capture, Xenium control probes and codewords, ...) are removed from
    ``X``; their per-spot totals go to ``obs['dropped_<type>_counts']``. Returns ``(adata, attrs,
    dropped)`` with ``dropped`` describing the removed features per type.
    """
    import scanpy as sc

    attrs = inspect_10x_h5(path)
    try:
        with warnings.catch_warnings():  # duplicated symbols are made unique just below
            warnings.filterwarnings("ignore", message="Variable names are not unique")
            adata = sc.read_10x_h5(path, gex_only=False)
    except InputError:
        raise
    except Exception as e:  # scanpy raises bare Exception/ValueError on malformed files
        raise InputError(f"{path}: cannot be read as a 10x h5 ({e})") from e
    adata, dropped = keep_gene_expression(adata, path)
    return adata, attrs, dropped


# --- spatial/ -------------------------------------------------------------------------------------
def _assumed_version(attrs: dict[str, Any], hd: bool) -> str:
    sw = attrs.get(TenxH5.ATTR_SOFTWARE)
    if sw:
        return f"the matrix was written by {sw}"
    return f"assuming {SPACERANGER_HD if hd else SPACERANGER_VISIUM}"


def find_positions(spatial_dir: Path, *, attrs: dict[str, Any], hd: bool) -> Path:
    """The positions file in ``spatial_dir``, looked for in the order of ``POSITIONS_FILES``."""
    for name, _version in POSITIONS_FILES:
        if (spatial_dir / name).is_file():
            return spatial_dir / name
    expected = " or ".join(f"{name} ({version})" for name, version in POSITIONS_FILES
                           if hd or name != TenxFile.POSITIONS_PARQUET)
    raise InputError(f"{spatial_dir}: no tissue positions file; expected {expected} "
                     f"({_assumed_version(attrs, hd)})")


def read_positions(path: Path) -> pd.DataFrame:
    """Read a Space Ranger positions file into a frame indexed by barcode.

    ``tissue_positions.parquet`` and ``tissue_positions.csv`` carry a header; ``tissue_positions_list``
    files do not. Whichever the name, a first cell equal to ``barcode`` means a header row.
    """
    names = list(POSITION_COLUMNS)
    if path.suffix == PARQUET_SUFFIX:
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises its own errors on corrupt files
            raise InputError(f"{path}: cannot be read as parquet ({e})") from e
        header = True
    else:
        first = first_line(path).split(",")
        header = first[0].strip().strip('"').lower() == VisiumCol.BARCODE
        if not header and len(first) != len(names):
            raise InputError(f"{path}: expected {len(names)} columns without a header row (Space Ranger 1.x: "
                             f"{', '.join(names)}), found {len(first)}")
        try:
            df = pd.read_csv(path, header=0 if header else None, names=None if header else names,
                             dtype={VisiumCol.BARCODE: str})
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
            raise InputError(f"{path}: cannot be parsed as CSV ({e})") from e
    if header:
        missing = [c for c in names if c not in df.columns]
        if missing:
            raise InputError(f"{path}: missing column(s) {missing}; a Space Ranger positions file has "
                             f"{', '.join(names)}")
    df[VisiumCol.BARCODE] = df[VisiumCol.BARCODE].astype(str)
    df = df.set_index(VisiumCol.BARCODE)
    check_unique(df.index, file=path)
    return df


def read_scalefactors(spatial_dir: Path, *, attrs: dict[str, Any], hd: bool) -> dict[str, Any]:
    path = spatial_dir / TenxFile.SCALEFACTORS
    require_file(path, "scale factors JSON", f"Space Ranger writes it to spatial/ ({_assumed_version(attrs, hd)})")
    try:
        with open(path) as fh:
            scalefactors = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: invalid JSON ({e})") from e
    if not isinstance(scalefactors, dict):
        raise InputError(f"{path}: expected a JSON object of scale factors, got {type(scalefactors).__name__}")
    return scalefactors


def load_spatial_images(spatial_dir: Path) -> dict[str, np.ndarray]:
    """``{'hires': rgb, 'lowres': rgb}`` for the images present; a warning names each missing one."""
    images = {}
    for key, name in IMAGE_FILES:
        path = spatial_dir / name
        if path.is_file():
            images[key] = load_image(path)
        else:
            logg.warning(f"{path}: {key} tissue image not found; uns['spatial'][...]['images'] has no '{key}'")
    return images


def _check_spatial(h5: Path, spatial_dir: Path, *, hd: bool):
    """The h5's attributes, positions file, scale factors and positions, checked before any counts are read."""
    attrs = inspect_10x_h5(h5)
    if not spatial_dir.is_dir():
        raise InputError(f"{spatial_dir}: spatial/ directory not found (expected beside {h5.name}, holding a "
                         f"tissue positions file and {TenxFile.SCALEFACTORS}; {_assumed_version(attrs, hd)})")
    pos_path = find_positions(spatial_dir, attrs=attrs, hd=hd)
    scalefactors = read_scalefactors(spatial_dir, attrs=attrs, hd=hd)
    return attrs, pos_path, scalefactors, read_positions(pos_path)


def _read_spaceranger(h5: Path, spatial_dir: Path, *, library_id: str | None, default_id: str,
                      load_images: bool, fmt: str, source: Path, hd: bool, metadata: dict[str, Any] | None = None,
                      archive: tuple[Path, Path] | None = None):
    """Read the h5 and spatial/ of one Space Ranger sample. ``archive``: (extraction root, archive path)."""

    def shown(p: Path) -> str:
        return shown_path(p, archive[1] if archive is not None else None)

    start = logg.info(f"reading {fmt} from {source}")
    attrs, pos_path, scalefactors, positions = _check_spatial(h5, spatial_dir, hd=hd)
    adata, attrs, dropped = read_10x_counts(h5)
    check_unique(adata.obs_names, file=h5)

    found = match_barcodes(adata.obs_names, positions.index, matrix_file=h5, coord_file=pos_path)
    pos = positions.reindex(adata.obs_names[found])
    in_tissue = numeric_column(pos[VisiumCol.IN_TISSUE], file=pos_path, column=VisiumCol.IN_TISSUE)
    on = in_tissue == 1
    if not on.any():
        raise InputError(f"{pos_path}: none of the {int(found.sum())} spots of {h5.name} is in tissue "
                         f"({VisiumCol.IN_TISSUE} == 1)")
    keep = np.flatnonzero(found)[on]
    adata = adata[keep].copy()
    pos = pos.iloc[np.flatnonzero(on)]
    for col in POSITION_OBS_COLUMNS:
        adata.obs[col] = numeric_column(pos[col], file=pos_path, column=col).astype(np.int64)
    xy = np.column_stack([numeric_column(pos[c], file=pos_path, column=c, what="coordinate")
                          for c in (SPOTS_X, SPOTS_Y)])

    lib_attr = attrs.get(TenxH5.ATTR_LIBRARY_IDS)
    if library_id is None:
        library_id = str(lib_attr[0]) if isinstance(lib_attr, list) and lib_attr else default_id
    meta = {k: str(attrs[k]) for k in TENX_H5_METADATA_ATTRS if attrs.get(k) is not None}
    meta.update(metadata or {})
    images = load_spatial_images(spatial_dir) if load_images else {}
    adata.uns[SPATIAL] = {
        str(library_id): {
            UnsSpatial.IMAGES: images,
            UnsSpatial.SCALEFACTORS: scalefactors,
            UnsSpatial.METADATA: meta,
        }
    }
    details = {
        "files": [shown(h5), shown(pos_path), shown(spatial_dir / TenxFile.SCALEFACTORS)],
        "positions_file": pos_path.name,
        "dropped_spots": {"not_in_positions": int((~found).sum()), "off_tissue": int((~on).sum())},
        "dropped_features": dropped,
        "images": sorted(images),
        **({"space_ranger": meta[TenxH5.ATTR_SOFTWARE]} if TenxH5.ATTR_SOFTWARE in meta else {}),
    }
    source = archive[1] if archive is not None else source
    adata = finalize(adata, xy=xy, library_id=str(library_id), fmt=fmt, source=source, unit=Unit.PIXEL,
                     file=h5, details=details)
    logg.info(f"    finished: {adata.n_obs} spots x {adata.n_vars} genes", time=start, deep=f"added {_SLOTS}")
    return adata


# --- public readers ------------------------------------------------------------------------------
def _find_in_archive(root: Path, filename: str, archive: Path) -> Path:
    hits = sorted(p.parent for p in root.rglob(filename) if p.is_file())
    if not hits:
        raise InputError(f"{archive}: no {filename} inside the archive (expected a Space Ranger outs/ "
                         f"directory, {SPACERANGER_VISIUM})")
    if len(hits) > 1:
        rel = [str(h.relative_to(root)) for h in hits]
        raise InputError(f"{archive}: {len(hits)} directories hold {filename} ({rel}); pack one sample per archive")
    return hits[0]


def _default_id(path: Path) -> str:
    path = path.resolve()
    return path.parent.name if path.name == TenxFile.OUTS_DIR and path.parent.name else path.name


def read_visium(path: PathLike, *, library_id: str | None = None, count_file: str = TenxFile.FILTERED_H5,
                load_images: bool = True):
    """Read a Space Ranger Visium ``outs/`` directory (or a ``.tar.gz`` of one).

    Parameters
    ----------
    path
        The ``outs/`` directory, its parent, or a ``.tar.gz``/``.tgz``/``.tar`` holding one (extracted to
        a temporary directory; absolute paths, ``..`` and links are refused).
    library_id
        Key of ``uns['spatial']`` and value of ``obs['slice']``. Default: the h5's ``library_ids``
        attribute, else the sample directory's name.
    count_file
        Count matrix inside ``outs/``: ``filtered_feature_bc_matrix.h5`` or ``raw_feature_bc_matrix.h5``.
    load_images
        Load ``tissue_hires_image.png`` and ``tissue_lowres_image.png`` (a missing one is a warning).

    Returns
    -------
    AnnData with in-tissue spots that are both in the matrix and in the positions file:

    - ``X``, ``layers['counts']``: float32 CSR counts, ``Gene Expression`` features only; other feature
      types leave their per-spot totals in ``obs['dropped_<type>_counts']``;
    - ``obs_names``: barcodes; ``obs['in_tissue', 'array_row', 'array_col']``; ``obs['slice']``;
    - ``var_names``: gene symbols made unique; ``var['gene_ids', 'feature_types', 'genome', 'gene_symbols']``;
    - ``obsm['spatial']``: float64 (x, y) = (``pxl_col_in_fullres``, ``pxl_row_in_fullres``);
    - ``uns['spatial'][library_id]``: ``images`` (``hires``, ``lowres``: RGB uint8), ``scalefactors``
      (the JSON as is), ``metadata`` (``chemistry_description``, ``software_version``);
    - ``uns['spatialdomains']['read']``: files read, spots dropped (off tissue, without position),
      features dropped.

    Raises
    ------
    InputError
        A missing matrix, positions file or scale factors (naming the path and the Space Ranger version
        assumed), an unreadable h5, non-numeric or negative counts, positions with missing or
        non-numeric coordinates, or a positions file sharing too few barcodes with the matrix.

    Notes
    -----
    Files read: ``<count_file>``; ``spatial/tissue_positions.csv`` (Space Ranger >= 2.0, header) or
    ``spatial/tissue_positions_list.csv``/``.txt`` (1.x, no header); ``spatial/scalefactors_json.json``;
    ``spatial/tissue_hires_image.png``, ``spatial/tissue_lowres_image.png`` (optional).
    """
    path = Path(path)
    if is_archive(path):
        with extracted(path) as root:
            outs = _find_in_archive(root, count_file, path)
            return _read_visium_dir(outs, library_id=library_id, default_id=archive_stem(path),
                                    count_file=count_file, load_images=load_images, archive=(root, path))
    if not path.exists():
        raise InputError(f"{path}: Space Ranger output directory not found")
    if path.is_file():
        if path.suffix == H5_SUFFIX:
            return read_10x_h5(path, library_id=library_id, load_images=load_images)
        raise InputError(f"{path}: expected a Space Ranger outs/ directory, a .tar.gz of one, or a 10x .h5")
    if not (path / count_file).exists() and (path / TenxFile.OUTS_DIR).is_dir():
        path = path / TenxFile.OUTS_DIR
    return _read_visium_dir(path, library_id=library_id, default_id=_default_id(path), count_file=count_file,
                            load_images=load_images)


def _read_visium_dir(path: Path, *, library_id: str | None, default_id: str, count_file: str, load_images: bool,
                     archive: tuple[Path, Path] | None = None):
    h5 = path / count_file
    if not h5.is_file():
        raise InputError(f"{h5}: count matrix not found; expected the Space Ranger outs/ layout "
                         f"({SPACERANGER_VISIUM}): {count_file} beside spatial/ ({TenxFile.POSITIONS_CSV} for "
                         f">= 2.0 or {TenxFile.POSITIONS_LIST_CSV} for 1.x, {TenxFile.SCALEFACTORS})")
    return _read_spaceranger(h5, path / TenxFile.SPATIAL_DIR, library_id=library_id, default_id=default_id,
                             load_images=load_images, fmt=Format.VISIUM, source=path, hd=False, archive=archive)


def read_10x_h5(path: PathLike, *, spatial_dir: PathLike | None = None, library_id: str | None = None,
                load_images: bool = True):
    """Read a 10x ``.h5`` count matrix with a Space Ranger ``spatial/`` directory beside it (or given).

    Parameters
    ----------
    path
        The ``.h5`` (Cell Ranger >= 3 layout, or the legacy per-genome layout).
    spatial_dir
        Directory with the positions file and scale factors. Default: ``spatial/`` beside ``path``.
    library_id
        Default: the h5's ``library_ids`` attribute, else the file name without ``.h5``.
    load_images
        Load the hires/lowres PNGs of ``spatial_dir`` (a missing one is a warning).

    Returns
    -------
    The same slots as :func:`read_visium`.

    Raises
    ------
    InputError
        As :func:`read_visium`; a missing ``spatial_dir`` names the directory expected.

    Notes
    -----
    Files read: ``path``; in ``spatial_dir``: ``tissue_positions.parquet`` (>= 3.0), ``tissue_positions.csv``
    (>= 2.0) or ``tissue_positions_list.csv``/``.txt`` (1.x); ``scalefactors_json.json``; images.
    """
    path = Path(path)
    require_file(path, "10x count matrix (.h5)")
    spatial = Path(spatial_dir) if spatial_dir is not None else path.parent / TenxFile.SPATIAL_DIR
    hd = (spatial / TenxFile.POSITIONS_PARQUET).is_file()
    return _read_spaceranger(path, spatial, library_id=library_id, default_id=path.stem, load_images=load_images,
                             fmt=Format.TENX_H5, source=path, hd=hd)


def _hd_bin_dir(path: Path, bin_size: int | None) -> tuple[Path, int]:
    m = HD_SQUARE_RE.match(path.name)
    if m:
        size = int(m.group(1))
        if bin_size is not None and int(bin_size) != size:
            raise InputError(f"{path}: the directory holds {size} um bins but bin_size={bin_size} was asked for; "
                             f"point at {path.parent / HD_SQUARE_DIR.format(int(bin_size))} instead")
        return path, size
    size = HD_DEFAULT_BIN_UM if bin_size is None else int(bin_size)
    for candidate in (path, path / TenxFile.OUTS_DIR):
        if (candidate / TenxFile.BINNED_DIR).is_dir():
            binned = candidate / TenxFile.BINNED_DIR
            break
    else:
        if path.name == TenxFile.BINNED_DIR:
            binned = path
        else:
            raise InputError(f"{path}: no {TenxFile.BINNED_DIR}/ directory; expected the Visium HD layout "
                             f"({SPACERANGER_HD}): outs/{TenxFile.BINNED_DIR}/{HD_SQUARE_DIR.format(size)}/"
                             f"{{{TenxFile.FILTERED_H5}, spatial/{TenxFile.POSITIONS_PARQUET}}}")
    bin_dir = binned / HD_SQUARE_DIR.format(size)
    if not bin_dir.is_dir():
        have = sorted(p.name for p in binned.iterdir() if HD_SQUARE_RE.match(p.name))
        raise InputError(f"{bin_dir}: no {size} um bin directory (found: {have or 'none'})")
    return bin_dir, size


def read_visium_hd(path: PathLike, *, bin_size: int | None = None, library_id: str | None = None,
                   load_images: bool = True, allow_2um: bool = False):
    """Read one bin size of Visium HD outputs (Space Ranger >= 3.0).

    Parameters
    ----------
    path
        ``outs/`` (or its parent, or ``binned_outputs/``), or a ``square_XXXum`` directory itself, or a
        ``.tar.gz`` of one of these.
    bin_size
        Bin edge in microns (``square_{bin_size:03d}um``). Default: the ``square_XXXum`` directory's own
        size, else 8. A value that contradicts a ``square_XXXum`` path is an error.
    library_id
        Default: the h5's ``library_ids`` attribute, else the sample directory's name.
    load_images
        Load the bin directory's ``spatial/tissue_hires_image.png``/``tissue_lowres_image.png``.
    allow_2um
        2 um bins (about 11 million per capture area) are refused unless this is ``True``.

    Returns
    -------
    The slots of :func:`read_visium` (bins as spots), and
    ``uns['spatial'][library_id]['metadata']['bin_size_um']``.

    Raises
    ------
    InputError
        As :func:`read_visium`; also a missing bin directory (listing those present) and 2 um bins.

    Notes
    -----
    Files read: In ``binned_outputs/square_XXXum/``: ``filtered_feature_bc_matrix.h5``,
    ``spatial/tissue_positions.parquet`` (or ``.csv``), ``spatial/scalefactors_json.json``, images.
    """
    path = Path(path)
    if is_archive(path):
        with extracted(path) as root:
            return _read_hd_dir(root, bin_size=bin_size, library_id=library_id, load_images=load_images,
                                allow_2um=allow_2um, archive=(root, path))
    if not path.is_dir():
        raise InputError(f"{path}: Visium HD output directory not found")
    return _read_hd_dir(path, bin_size=bin_size, library_id=library_id, load_images=load_images,
                        allow_2um=allow_2um)


def _read_hd_dir(path: Path, *, bin_size: int | None, library_id: str | None, load_images: bool, allow_2um: bool,
                 archive: tuple[Path, Path] | None = None):
    bin_dir, size = _hd_bin_dir(path, bin_size)
    if size == HD_REFUSED_BIN_UM and not allow_2um:
        raise InputError(f"{bin_dir}: 2 um bins (about 11 million per capture area) are too large for this "
                         "pipeline by default; use bin_size=8 or 16, or pass allow_2um=True")
    h5 = bin_dir / TenxFile.FILTERED_H5
    require_file(h5, "count matrix", f"expected the Visium HD layout ({SPACERANGER_HD}): {bin_dir.name}/"
                 f"{TenxFile.FILTERED_H5} beside spatial/{TenxFile.POSITIONS_PARQUET}")
    sample = bin_dir.parent.parent if bin_dir.parent.name == TenxFile.BINNED_DIR else bin_dir
    default_id = archive_stem(archive[1]) if archive is not None else _default_id(sample)
    # spatialdata-io reads the bins of a whole outs/ folder; ours the layouts it does not (see _visium_hd.py)
    from ._visium_hd import read_hd_with_spatialdata_io

    adata = read_hd_with_spatialdata_io(bin_dir, size=size, library_id=library_id, default_id=default_id,
                                        load_images=load_images, archive=archive)
    if adata is not None:
        return adata
    return _read_spaceranger(h5, bin_dir / TenxFile.SPATIAL_DIR, library_id=library_id, default_id=default_id,
                             load_images=load_images, fmt=Format.VISIUM_HD, source=bin_dir, hd=True,
                             metadata={UnsSpatial.BIN_SIZE_UM: size}, archive=archive)
