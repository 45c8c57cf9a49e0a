"""Preprocessing: QC filters, normalisation, highly variable genes and group preparation."""

from ._qc import qc, qc_summary
from ._normalize import normalize
from ._hvg import highly_variable_genes, HVG_FLAVORS
from ._prepare import PrepConfig, prepare_group, concat_slices

__all__ = [
    "qc",
    "qc_summary",
    "normalize",
    "highly_variable_genes",
    "HVG_FLAVORS",
    "PrepConfig",
    "prepare_group",
    "concat_slices",
]
