"""Visium HD bins read by spatialdata-io (``spatialdata_io.visium_hd``), then given the AnnData contract.

spatialdata-io reads the count matrix, the bins (as circles at ``pxl_col/row_in_fullres``) and the
hires/lowres images of a Space Ranger >= 3 ``outs/`` folder; it needs the folder's ``feature_slice.h5``
(its metadata name the layout). Our checks run first, so bad input still fails with a message naming
the file (spatialdata-io asserts or raises ``KeyError`` instead): the h5's structure and numbers, the
positions file and its coordinates, the scale factors, and the barcodes shared by matrix and positions.

Our own reader (``_tenx._read_spaceranger``) stays for what spatialdata-io does not read: a bin folder
without the ``outs/`` around it (no ``feature_slice.h5``), and positions that lack some of the matrix's
barcodes (spatialdata-io fails on ``coords.loc``; ours drops them with a warning and records them).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .. import _logging as logg
from .._constants import SPATIAL
from .._utils import InputError
from ._constants import (
    HD_SQUARE_DIR,
    IMAGE_FILES,
    POSITION_OBS_COLUMNS,
    SPOTS_X,
    SPOTS_Y,
    TENX_H5_METADATA_ATTRS,
    Format,
    TenxFile,
    TenxH5,
    Unit,
    UnsSpatial,
    VisiumCol,
)
from ._utils import check_unique, finalize, match_barcodes, numeric_column, shown_path

FEATURE_SLICE = "feature_slice.h5"  #: ``outs/feature_slice.h5`` (``<dataset>_feature_slice.h5`` when downloaded)
_DATASET = "hd"  #: element names of the SpatialData object read (internal)


def feature_slice(outs: Path) -> Path | None:
    """The ``feature_slice.h5`` spatialdata-io needs (``feature_slice.h5`` or exactly one ``*_feature_slice.h5``)."""
    if (outs / FEATURE_SLICE).is_file():
        return outs / FEATURE_SLICE
    hits = sorted(outs.glob(f"*_{FEATURE_SLICE}")) if outs.is_dir() else []
    return hits[0] if len(hits) == 1 else None


def _h5_barcodes(h5: Path):
    import h5py
    import pandas as pd

    with h5py.File(h5, "r") as f:
        return pd.Index([b.decode() if isinstance(b, bytes) else str(b) for b in f[TenxH5.MATRIX][TenxH5.BARCODES][()]])


def read_hd_with_spatialdata_io(bin_dir: Path, *, size: int, library_id: str | None, default_id: str,
                                load_images: bool, archive: tuple[Path, Path] | None = None):
    """One bin size of a Visium HD ``outs/`` through spatialdata-io; None when it cannot read this layout.

    Returns the slots of :func:`read_visium_hd` (``uns['spatialdomains']['read']['reader']`` names
    spatialdata-io and its version).
    """
    from ._tenx import _check_spatial, keep_gene_expression

    outs = bin_dir.parent.parent if bin_dir.parent.name == TenxFile.BINNED_DIR else None
    slice_file = feature_slice(outs) if outs is not None else None
    if slice_file is None:
        logg.info(f"    {bin_dir}: no {FEATURE_SLICE} in the outs/ folder around it; reading with our Space Ranger "
                  "reader instead of spatialdata-io")
        return None
    h5 = bin_dir / TenxFile.FILTERED_H5
    spatial_dir = bin_dir / TenxFile.SPATIAL_DIR
    start = logg.info(f"reading {Format.VISIUM_HD} from {bin_dir} with spatialdata-io")
    attrs, pos_path, scalefactors, positions = _check_spatial(h5, spatial_dir, hd=True)
    barcodes = _h5_barcodes(h5)
    check_unique(barcodes, file=h5)
    found = match_barcodes(barcodes, positions.index, matrix_file=h5, coord_file=pos_path)
    if not found.all():
        return None  # our reader drops them with a warning; spatialdata-io would fail
    pos = positions.reindex(barcodes)
    for col in (SPOTS_X, SPOTS_Y):
        numeric_column(pos[col], file=pos_path, column=col, what="coordinate")
    in_tissue = numeric_column(pos[VisiumCol.IN_TISSUE], file=pos_path, column=VisiumCol.IN_TISSUE)

    import spatialdata
    import spatialdata_io

    prefix = "" if slice_file.name == FEATURE_SLICE else slice_file.name[: -len(FEATURE_SLICE) - 1]
    try:
        with warnings.catch_warnings():  # missing full-resolution image, non-unique symbols (made unique below)
            warnings.simplefilter("ignore")
            sdata = spatialdata_io.visium_hd(outs, dataset_id=prefix or _DATASET, bin_size=size,
                                             load_segmentations_only=False, bins_as_squares=False,
                                             var_names_make_unique=False, gex_only=False)
    except Exception as e:  # noqa: BLE001 - spatialdata-io asserts and raises many kinds on layouts it does not know
        raise InputError(f"{outs}: spatialdata-io could not read the Visium HD outputs ({type(e).__name__}: {e})") \
            from e
    dataset = prefix or _DATASET
    table = sdata.tables[HD_SQUARE_DIR.format(size)]
    region = f"{dataset}_{HD_SQUARE_DIR.format(size)}"
    centroids = spatialdata.get_centroids(sdata.shapes[region], coordinate_system=dataset).compute()
    instance = table.obs[table.uns["spatialdata_attrs"]["instance_key"]].to_numpy()
    xy = centroids.loc[instance, ["x", "y"]].to_numpy(dtype=np.float64)
    adata = table.copy()
    adata.obs = adata.obs[[c for c in POSITION_OBS_COLUMNS]].astype(np.int64)
    adata.obsm.pop(SPATIAL, None)
    adata.uns = {}
    adata, dropped = keep_gene_expression(adata, h5)
    on = np.asarray(adata.obs[VisiumCol.IN_TISSUE] == 1)
    if not on.any():
        raise InputError(f"{pos_path}: none of the {len(barcodes)} spots of {h5.name} is in tissue "
                         f"({VisiumCol.IN_TISSUE} == 1)")
    adata, xy = adata[on].copy(), xy[on]

    lib_attr = attrs.get(TenxH5.ATTR_LIBRARY_IDS)
    if library_id is None:
        library_id = str(lib_attr[0]) if isinstance(lib_attr, list) and lib_attr else default_id
    meta: dict[str, Any] = {k: str(attrs[k]) for k in TENX_H5_METADATA_ATTRS if attrs.get(k) is not None}
    meta[UnsSpatial.BIN_SIZE_UM] = size
    images = {}
    if load_images:
        for key, name in IMAGE_FILES:
            element = sdata.images.get(f"{dataset}_{key}_image")
            if element is None:
                logg.warning(f"{spatial_dir / name}: {key} tissue image not found; uns['spatial'][...]['images'] has "
                             f"no '{key}'")
                continue
            images[key] = np.ascontiguousarray(np.asarray(element.transpose("y", "x", "c").data), dtype=np.uint8)
    adata.uns[SPATIAL] = {str(library_id): {UnsSpatial.IMAGES: images, UnsSpatial.SCALEFACTORS: scalefactors,
                                            UnsSpatial.METADATA: meta}}

    def shown(p: Path) -> str:
        return shown_path(p, archive[1] if archive is not None else None)

    details = {
        "files": [shown(h5), shown(pos_path), shown(spatial_dir / TenxFile.SCALEFACTORS), shown(slice_file)],
        "positions_file": pos_path.name,
        "dropped_spots": {"not_in_positions": 0, "off_tissue": int((in_tissue != 1).sum())},
        "dropped_features": dropped,
        "images": sorted(images),
        "reader": f"spatialdata-io {spatialdata_io.__version__}",
        **({"space_ranger": meta[TenxH5.ATTR_SOFTWARE]} if TenxH5.ATTR_SOFTWARE in meta else {}),
    }
    source = archive[1] if archive is not None else bin_dir
    adata = finalize(adata, xy=xy, library_id=str(library_id), fmt=Format.VISIUM_HD, source=source, unit=Unit.PIXEL,
                     file=h5, details=details)
    logg.info(f"    finished: {adata.n_obs} bins x {adata.n_vars} genes", time=start,
              deep="added X, layers['counts'], obs['in_tissue', 'array_row', 'array_col', 'slice'], obsm['spatial'], "
                   "uns['spatial'], uns['spatialdomains']['read']")
    return adata
