"""File, dataset and column names the readers recognise: one place, no repeated literals.

Names are grouped in small namespaces (plain ``str`` attributes, safe in f-strings), in the spirit of
spatialdata-io's ``VisiumKeys`` and squidpy's ``Key``.
"""

from __future__ import annotations

import re


class Format:
    """Input formats :func:`spatialdomains.io.read` tells apart (``detect_format`` returns one of these)."""

    VISIUM = "visium"  #: Space Ranger ``outs/`` (or a ``.tar.gz`` of it)
    VISIUM_HD = "visium_hd"  #: Space Ranger >= 3 ``binned_outputs/square_XXXum/``
    TENX_H5 = "10x_h5"  #: a 10x ``.h5`` with a ``spatial/`` dir beside it
    H5AD = "h5ad"  #: AnnData with ``obsm['spatial']``
    XENIUM = "xenium"  #: Xenium Onboard Analysis output dir
    COSMX = "cosmx"  #: CosMx flat files
    TABLE = "table"  #: counts table / MTX + coordinates table
    SPATIALDATA = "spatialdata"  #: a SpatialData ``.zarr`` store (its table, coordinates and H&E image)


FORMATS = (Format.VISIUM, Format.VISIUM_HD, Format.TENX_H5, Format.H5AD, Format.XENIUM, Format.COSMX, Format.TABLE,
           Format.SPATIALDATA)

FORMAT_DESCRIPTION = {
    Format.VISIUM: "a Space Ranger Visium outs/ directory",
    Format.VISIUM_HD: "Visium HD binned outputs",
    Format.TENX_H5: "a 10x .h5 count matrix",
    Format.H5AD: "an .h5ad file",
    Format.XENIUM: "a Xenium output directory",
    Format.COSMX: "CosMx flat files",
    Format.TABLE: "a counts table + coordinates table",
    Format.SPATIALDATA: "a SpatialData .zarr store",
}

#: Sample-sheet platforms that name one specific format; the others (stereoseq, slideseq, merfish,
#: starmap, other) are read from whatever the path holds.
PLATFORM_FORMAT = {
    "visium": Format.VISIUM,
    "visium_hd": Format.VISIUM_HD,
    "xenium": Format.XENIUM,
    "cosmx": Format.COSMX,
}
#: Formats any platform may come in (an h5ad or a table is fine for a Visium slice too).
GENERIC_FORMATS = (Format.H5AD, Format.TABLE, Format.TENX_H5, Format.SPATIALDATA)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
H5AD_SUFFIX = ".h5ad"
H5_SUFFIX = ".h5"
PARQUET_SUFFIX = ".parquet"
GZ_SUFFIX = ".gz"


# --- 10x Genomics (Space Ranger, Cell Ranger, Xenium) -----------------------------------------------
class TenxFile:
    """File and directory names of Space Ranger outputs."""

    OUTS_DIR = "outs"
    FILTERED_H5 = "filtered_feature_bc_matrix.h5"
    RAW_H5 = "raw_feature_bc_matrix.h5"
    SPATIAL_DIR = "spatial"
    POSITIONS_PARQUET = "tissue_positions.parquet"  #: Space Ranger >= 3.0 (Visium HD bins), header
    POSITIONS_CSV = "tissue_positions.csv"  #: Space Ranger >= 2.0, header row
    POSITIONS_LIST_CSV = "tissue_positions_list.csv"  #: Space Ranger 1.x, no header
    POSITIONS_LIST_TXT = "tissue_positions_list.txt"  #: Space Ranger 1.0 early releases, no header
    SCALEFACTORS = "scalefactors_json.json"
    HIRES_IMAGE = "tissue_hires_image.png"
    LOWRES_IMAGE = "tissue_lowres_image.png"
    BINNED_DIR = "binned_outputs"  #: Visium HD


#: Positions files in the order they are looked for, with the Space Ranger version that writes each.
POSITIONS_FILES = (
    (TenxFile.POSITIONS_PARQUET, "Space Ranger >= 3.0 (Visium HD)"),
    (TenxFile.POSITIONS_CSV, "Space Ranger >= 2.0"),
    (TenxFile.POSITIONS_LIST_CSV, "Space Ranger 1.x"),
    (TenxFile.POSITIONS_LIST_TXT, "Space Ranger 1.x"),
)
SPACERANGER_VISIUM = "Space Ranger 1.x-3.x"
SPACERANGER_HD = "Space Ranger >= 3.0"


class TenxH5:
    """Groups, datasets and attributes of a Cell Ranger >= 3 feature-barcode h5."""

    MATRIX = "matrix"
    BARCODES = "barcodes"
    DATA = "data"
    INDICES = "indices"
    INDPTR = "indptr"
    SHAPE = "shape"
    FEATURES = "features"
    ID = "id"
    NAME = "name"
    FEATURE_TYPE = "feature_type"
    GENOME = "genome"
    ATTR_LIBRARY_IDS = "library_ids"
    ATTR_CHEMISTRY = "chemistry_description"
    ATTR_SOFTWARE = "software_version"
    GENE_EXPRESSION = "Gene Expression"


#: datasets under ``matrix/`` a v3 h5 must hold
TENX_H5_REQUIRED = (
    TenxH5.BARCODES,
    TenxH5.DATA,
    TenxH5.INDICES,
    TenxH5.INDPTR,
    TenxH5.SHAPE,
    f"{TenxH5.FEATURES}/{TenxH5.ID}",
    f"{TenxH5.FEATURES}/{TenxH5.NAME}",
    f"{TenxH5.FEATURES}/{TenxH5.FEATURE_TYPE}",
)
#: h5 attributes copied to ``uns['spatial'][library_id]['metadata']``
TENX_H5_METADATA_ATTRS = (TenxH5.ATTR_CHEMISTRY, TenxH5.ATTR_SOFTWARE)


class VisiumCol:
    """Columns of ``tissue_positions*``."""

    BARCODE = "barcode"
    IN_TISSUE = "in_tissue"
    ARRAY_ROW = "array_row"
    ARRAY_COL = "array_col"
    PXL_ROW = "pxl_row_in_fullres"
    PXL_COL = "pxl_col_in_fullres"


POSITION_COLUMNS = (
    VisiumCol.BARCODE,
    VisiumCol.IN_TISSUE,
    VisiumCol.ARRAY_ROW,
    VisiumCol.ARRAY_COL,
    VisiumCol.PXL_ROW,
    VisiumCol.PXL_COL,
)
#: obs columns kept from the positions file
POSITION_OBS_COLUMNS = (VisiumCol.IN_TISSUE, VisiumCol.ARRAY_ROW, VisiumCol.ARRAY_COL)
SPOTS_X = VisiumCol.PXL_COL  #: ``obsm['spatial'][:, 0]``
SPOTS_Y = VisiumCol.PXL_ROW  #: ``obsm['spatial'][:, 1]``


class VarCol:
    """``var`` columns the readers write (scanpy's names for the 10x ones)."""

    GENE_IDS = "gene_ids"
    FEATURE_TYPES = "feature_types"
    GENE_SYMBOLS = "gene_symbols"  #: names as read, before ``var_names_make_unique``


class UnsSpatial:
    """Keys of ``uns['spatial'][library_id]``."""

    IMAGES = "images"
    SCALEFACTORS = "scalefactors"
    METADATA = "metadata"
    HIRES = "hires"
    LOWRES = "lowres"
    SOURCE_IMAGE_PATH = "source_image_path"
    BIN_SIZE_UM = "bin_size_um"


IMAGE_FILES = ((UnsSpatial.HIRES, TenxFile.HIRES_IMAGE), (UnsSpatial.LOWRES, TenxFile.LOWRES_IMAGE))

# --- Visium HD -----------------------------------------------------------------------------------
HD_SQUARE_DIR = "square_{:03d}um"  #: ``HD_SQUARE_DIR.format(8) == "square_008um"``
HD_SQUARE_RE = re.compile(r"^square_(\d+)um$")
HD_DEFAULT_BIN_UM = 8
HD_REFUSED_BIN_UM = 2  #: ~11 M bins per capture area: refused unless ``allow_2um=True``


# --- Xenium --------------------------------------------------------------------------------------
class XeniumFile:
    MATRIX_H5 = "cell_feature_matrix.h5"
    CELLS_PARQUET = "cells.parquet"
    CELLS_CSV = "cells.csv.gz"
    EXPERIMENT = "experiment.xenium"


class XeniumCol:
    CELL_ID = "cell_id"
    X = "x_centroid"
    Y = "y_centroid"


#: keys of ``experiment.xenium`` copied into the read record
XENIUM_EXPERIMENT_KEYS = ("pixel_size", "run_name", "region_name", "panel_name", "analysis_sw_version")


# --- CosMx ---------------------------------------------------------------------------------------
class CosmxFile:
    EXPR_SUFFIX = "exprMat_file.csv"  #: ``<run>_exprMat_file.csv`` (optionally ``.gz``)
    META_SUFFIX = "metadata_file.csv"  #: ``<run>_metadata_file.csv`` (optionally ``.gz``)


class CosmxCol:
    FOV = "fov"
    CELL_ID = "cell_ID"
    CELL = "cell"  #: AtoMx exports add a ``c_<slide>_<fov>_<cell>`` column
    X = "CenterX_global_px"
    Y = "CenterY_global_px"


COSMX_ID_COLUMNS = (CosmxCol.FOV, CosmxCol.CELL_ID, CosmxCol.CELL)
COSMX_BACKGROUND_CELL_ID = 0
#: control features removed from ``X`` (group name -> column-name prefix); per-cell totals kept in obs
COSMX_CONTROL_PREFIXES = {"negprb": "NegPrb", "systemcontrol": "SystemControl"}


# --- plain tables (Stereo-seq, Slide-seq, STARmap, MERFISH, ...) ---------------------------------------
TABLE_SUFFIXES = (".csv", ".tsv", ".txt")  #: each also with ``.gz``
TAB_SUFFIXES = (".tsv",)


class MtxFile:
    MATRIX = "matrix.mtx"
    BARCODES = "barcodes.tsv"
    FEATURES = "features.tsv"
    GENES = "genes.tsv"  #: Cell Ranger 2 name


#: (x column, y column) pairs recognised in coordinate files, compared case-insensitively, first match wins
COORD_NAME_PAIRS = (
    ("x", "y"),
    ("xcoord", "ycoord"),
    ("x_coord", "y_coord"),
    ("coord_x", "coord_y"),
    ("x_centroid", "y_centroid"),
    ("center_x", "center_y"),
    ("centerx_global_px", "centery_global_px"),
    ("imagecol", "imagerow"),
    ("pxl_col_in_fullres", "pxl_row_in_fullres"),
    ("spatial_x", "spatial_y"),
    ("x_location", "y_location"),
    ("pos_x", "pos_y"),
)
#: column names given to a coordinates table without a header (three columns)
HEADERLESS_COORD_COLUMNS = ("barcode", "x", "y")
#: barcode column names recognised in coordinate files (else the first column is the barcode)
BARCODE_COLUMN_NAMES = ("barcode", "barcodes", "cell", "cell_id", "cellid", "spot", "spot_id", "bead",
                        "entityid", "id", "")
#: name fragments that mark a coordinates file / a counts file in a directory (lower case)
COORD_FILE_TOKENS = ("coord", "spatial", "position", "location", "centroid", "cell_metadata")
COUNTS_FILE_TOKENS = ("count", "matrix", "expr", "cell_by_gene", "dge", "umi")
#: largest number of values converted to a dense block at once when parsing a text table
TABLE_CHUNK_VALUES = 20_000_000


# --- SpatialData ------------------------------------------------------------------------------------
ZARR_SUFFIX = ".zarr"
#: files at the root of a zarr group (v3, then v2)
ZARR_ROOT_FILES = ("zarr.json", ".zgroup")
#: top-level groups of a SpatialData store; a store holds at least one
SDATA_ELEMENT_GROUPS = ("images", "labels", "points", "shapes", "tables")


class SdataKey:
    """Names in the SpatialData stores we read and write."""

    ATTRS = "spatialdata_attrs"  #: ``table.uns[ATTRS]``: ``region``, ``region_key``, ``instance_key``
    REGION = "region"
    REGION_KEY = "region_key"
    INSTANCE_KEY = "instance_key"
    TABLE = "table"  #: the table read when a store has several, and the one we write
    GLOBAL = "global"  #: the usual coordinate system of single-slice stores
    REGION_COLUMN = "region"  #: obs column naming each row's spots element (written)
    INSTANCE_COLUMN = "instance_id"  #: obs column: the row's index in its spots element (written)
    SPOTS = "{}_spots"  #: circles element of one slice (written)
    IMAGE = "{}_image"  #: H&E image element of one slice (written)
    CHANNELS = ("r", "g", "b")


#: image element names that mark an H&E (lower case fragments), preferred over other RGB images
SDATA_HE_TOKENS = ("he", "hne", "h&e", "histo", "full", "hires", "tissue")
#: longest side of the image level copied into ``uns['spatial']`` by the SpatialData reader
SDATA_MAX_IMAGE_SIDE = 4000
#: pyramid of a full-resolution image written to a store: downscale factors, used above this many pixels a side
SDATA_PYRAMID = (2, 2, 2, 2)
SDATA_PYRAMID_MIN_SIDE = 4096


# --- shared --------------------------------------------------------------------------------------
#: smallest fraction of the matrix's barcodes that must have coordinates; below it the pair is refused
MIN_BARCODE_MATCH = 0.5
READ_STEP = "read"  #: ``uns['spatialdomains']['read']``: format, source, unit, what was dropped


class Unit:
    PIXEL = "pixel"  #: full-resolution image pixels
    MICRON = "micron"
    AS_IN_FILE = "as in file"


DROPPED_OBS_COLUMN = "dropped_{}_counts"  #: per-cell total of a dropped feature group
