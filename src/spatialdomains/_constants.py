"""One source of key names, file names and defaults shared by the library, the CLI and the pipeline."""

from __future__ import annotations

# --- AnnData slots -------------------------------------------------------------------------------
SPATIAL = "spatial"  #: ``obsm[SPATIAL]``: float (x, y) = (pixel column, pixel row) in full-resolution pixels
COUNTS_LAYER = "counts"  #: ``layers[COUNTS_LAYER]``: raw counts
SLICE_KEY = "slice"  #: ``obs[SLICE_KEY]``: categorical slice id (sample-sheet ``sample``)
TRUTH_KEY = "truth"  #: ``obs[TRUTH_KEY]``: optional manual annotation, NaN for unlabelled
UNS_KEY = "spatialdomains"  #: ``uns[UNS_KEY]``: params, versions and provenance of every step
IMAGE_FEATURES = "X_image"  #: ``obsm[IMAGE_FEATURES]``: per-spot image features (PCA of BYOL)
SPATIAL_CONN = "spatial_connectivities"  #: ``obsp[SPATIAL_CONN]``: CSR adjacency of the spatial graph
SPATIAL_DIST = "spatial_distances"
SPATIAL_NEIGHBORS = "spatial_neighbors"  #: ``uns[SPATIAL_NEIGHBORS]``: graph parameters
HVG_KEY = "highly_variable"
QC_KEY = "qc"


def embedding_key(method: str) -> str:
    """``obsm`` key of a method's embedding, e.g. ``X_staig``."""
    return f"X_{method}"


def domain_key(method: str) -> str:
    """``obs`` key of a method's domain labels, e.g. ``domain_staig``."""
    return f"domain_{method}"


# --- platforms ------------------------------------------------------------------------------------
PLATFORMS = (
    "visium",
    "visium_hd",
    "xenium",
    "cosmx",
    "stereoseq",
    "slideseq",
    "merfish",
    "starmap",
    "other",
)

#: Default spatial graph per platform: kind ("hex" = Visium ring from spot spacing, "knn", "radius")
#: and its size. Visium's ring-1 neighbourhood is the 6 adjacent spots of the hex lattice.
PLATFORM_GRAPH = {
    "visium": {"kind": "hex", "k": 6},
    "visium_hd": {"kind": "knn", "k": 8},
    "xenium": {"kind": "knn", "k": 8},
    "cosmx": {"kind": "knn", "k": 8},
    "stereoseq": {"kind": "knn", "k": 8},
    "slideseq": {"kind": "knn", "k": 8},
    "merfish": {"kind": "knn", "k": 8},
    "starmap": {"kind": "knn", "k": 8},
    "other": {"kind": "knn", "k": 6},
}
