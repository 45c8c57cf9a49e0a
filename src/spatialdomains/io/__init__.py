"""Readers: one function per input format, all returning the same AnnData contract.

``read`` dispatches by format (detected from the path, or from the sample sheet's ``platform``).
Every reader writes ``X`` and ``layers['counts']`` (float32 CSR raw counts), ``obs['slice']``,
``obsm['spatial']`` (float64 (x, y)) and ``uns['spatialdomains']['read']``; the 10x Space Ranger
and SpatialData readers also write ``uns['spatial'][library_id]`` (images, scale factors, metadata). Bad input raises
:class:`spatialdomains._utils.InputError` naming the file and the problem.
"""

from ._constants import FORMATS, Format
from ._cosmx import read_cosmx
from ._h5ad import read_h5ad
from ._read import READERS, attach_truth, detect_format, read
from ._spatialdata import read_spatialdata, spatialdata_rgb_images, write_group_spatialdata
from ._table import read_table
from ._tenx import read_10x_h5, read_visium, read_visium_hd
from ._xenium import read_xenium

__all__ = [
    "read",
    "read_visium",
    "read_visium_hd",
    "read_10x_h5",
    "read_h5ad",
    "read_xenium",
    "read_cosmx",
    "read_table",
    "read_spatialdata",
    "write_group_spatialdata",
    "spatialdata_rgb_images",
    "detect_format",
    "attach_truth",
    "READERS",
    "FORMATS",
    "Format",
]
