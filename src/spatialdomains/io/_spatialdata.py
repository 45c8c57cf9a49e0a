"""SpatialData (``.zarr``) in and out.

In: one slice of a SpatialData store (its table, the spots the table annotates, and an RGB H&E image
element when there is one) -> the AnnData contract. Out: a group's clustered runs (every method and
seed) -> one store with the domains and embeddings in its table, the spots as circles and the H&E
image of every slice, each slice in its own coordinate system (named after the slice, in full-resolution
pixels).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import _logging as logg
from .._constants import COUNTS_LAYER, SLICE_KEY, SPATIAL, UNS_KEY, domain_key, embedding_key
from .._utils import InputError
from ._constants import (
    SDATA_ELEMENT_GROUPS,
    SDATA_HE_TOKENS,
    SDATA_MAX_IMAGE_SIDE,
    SDATA_PYRAMID,
    SDATA_PYRAMID_MIN_SIDE,
    ZARR_ROOT_FILES,
    ZARR_SUFFIX,
    Format,
    SdataKey,
    Unit,
    UnsSpatial,
)
from ._utils import PathLike, check_unique, finalize, load_image, use_raw_counts

_XY = ("x", "y")


# --- what a store holds, without importing spatialdata ------------------------------------------------
def is_spatialdata_store(path: PathLike) -> bool:
    """A directory that is a zarr group (``zarr.json`` or ``.zgroup``) with SpatialData's element groups."""
    path = Path(path)
    if not path.is_dir() or not any((path / f).is_file() for f in ZARR_ROOT_FILES):
        return False
    return any((path / g).is_dir() for g in SDATA_ELEMENT_GROUPS)


def _rgb_level0(group) -> bool:
    """Whether a NGFF image group's first level has a channel axis of length 3 (RGB)."""
    attrs = dict(group.attrs)
    ms = (attrs.get("ome") or attrs).get("multiscales") or []
    if not ms:
        return False
    axes = [a.get("name") if isinstance(a, dict) else a for a in ms[0].get("axes", [])]
    datasets = ms[0].get("datasets") or []
    if "c" not in axes or not datasets:
        return False
    try:
        shape = group[datasets[0]["path"]].shape
    except KeyError:
        return False
    return len(shape) == len(axes) and shape[axes.index("c")] == 3


def spatialdata_rgb_images(path: PathLike) -> list[str]:
    """Names of the RGB image elements of a SpatialData store (read from the zarr metadata only)."""
    import zarr

    images = Path(path) / "images"
    if not images.is_dir():
        return []
    out = []
    for child in sorted(p for p in images.iterdir() if p.is_dir()):
        try:
            if _rgb_level0(zarr.open_group(str(child), mode="r")):
                out.append(child.name)
        except Exception:  # noqa: BLE001 - a broken element is reported by the reader, not here
            continue
    return out


# --- transformations -------------------------------------------------------------------------------
def _affine(element, cs: str) -> np.ndarray:
    """3x3 affine matrix from ``element``'s (x, y) to coordinate system ``cs``."""
    from spatialdata.transformations import get_transformation

    return np.asarray(get_transformation(element, to_coordinate_system=cs).to_affine_matrix(
        input_axes=_XY, output_axes=_XY), dtype=np.float64)


def _coordinate_systems(element) -> set[str]:
    from spatialdata.transformations import get_transformation

    return set(get_transformation(element, get_all=True))


def _apply(matrix: np.ndarray, xy: np.ndarray) -> np.ndarray:
    return xy @ matrix[:2, :2].T + matrix[:2, 2]


def _linear_scale(matrix: np.ndarray) -> float:
    """Isotropic scale of an affine map (square root of the area change)."""
    return float(np.sqrt(abs(np.linalg.det(matrix[:2, :2]))))


def _uniform_scale(matrix: np.ndarray) -> float | None:
    """``s`` when ``matrix`` is ``x -> s x`` (no rotation, shear or translation), else None."""
    lin, t = matrix[:2, :2], matrix[:2, 2]
    s = float(lin[0, 0])
    if s > 0 and np.allclose(lin, s * np.eye(2), rtol=1e-6, atol=0) and np.allclose(t, 0, atol=1e-6 * max(s, 1)):
        return s
    return None


# --- reading ---------------------------------------------------------------------------------------
def _element(sdata, name: str):
    for kind in ("shapes", "labels", "points", "images"):
        group = getattr(sdata, kind)
        if name in group:
            return kind, group[name]
    return None, None


def _pick_table(sdata, table_key: str | None, path: Path) -> tuple[str, Any]:
    names = list(sdata.tables)
    if not names:
        raise InputError(f"{path}: the SpatialData store has no table (elements: "
                         f"{sorted(sdata.images) + sorted(sdata.shapes) + sorted(sdata.labels)}); "
                         "the counts per spot must be in a table")
    if table_key is not None:
        if table_key not in names:
            raise InputError(f"{path}: no table {table_key!r} (tables: {names})")
        return table_key, sdata.tables[table_key]
    if len(names) == 1:
        return names[0], sdata.tables[names[0]]
    if SdataKey.TABLE in names:
        return SdataKey.TABLE, sdata.tables[SdataKey.TABLE]
    raise InputError(f"{path}: {len(names)} tables ({names}) and none is called {SdataKey.TABLE!r}; keep the one to "
                     "analyse (e.g. one bin size of Visium HD) in its own store")


def _pick_cs(systems: dict[str, set[str]], *, wanted: str | None, library_id: str | None, path: Path) -> str:
    """The coordinate system to read: ``wanted``, else the slice id, else 'global', else the only one shared."""
    every = set().union(*systems.values())
    if wanted is not None:
        if wanted not in every:
            raise InputError(f"{path}: no coordinate system {wanted!r} among the table's spots "
                             f"(has {sorted(every)})")
        return wanted
    if library_id is not None and library_id in every:
        return library_id
    shared = set.intersection(*systems.values())
    if SdataKey.GLOBAL in shared:
        return SdataKey.GLOBAL
    if len(shared) == 1:
        return next(iter(shared))
    if len(every) == 1:
        return next(iter(every))
    raise InputError(f"{path}: the table's spots are in several coordinate systems ({sorted(every)}); name the slice "
                     f"to read after one of them (sample id) or pass coordinate_system")


def _pick_image(sdata, cs: str) -> str | None:
    """The H&E image element in ``cs``: an RGB image, by name (``he``, ``full``, ``hires``, ...) then size."""
    cands = []
    for name, el in sdata.images.items():
        level0 = _levels(el)[0]
        if "c" not in level0.dims or level0.sizes["c"] != 3 or cs not in _coordinate_systems(el):
            continue
        low = name.lower()
        rank = next((i for i, tok in enumerate(SDATA_HE_TOKENS) if tok in low.replace("-", "_").split("_")
                     or low.endswith(tok)), len(SDATA_HE_TOKENS))
        cands.append((rank, -level0.sizes["x"] * level0.sizes["y"], name))
    return min(cands)[2] if cands else None


def _levels(image) -> list:
    """The pyramid levels of an image element (a single-scale image is one level), finest first."""
    from spatialdata import get_pyramid_levels
    from xarray import DataArray

    if isinstance(image, DataArray):
        return [image]
    return list(get_pyramid_levels(image))


def _as_rgb_uint8(level) -> np.ndarray:
    arr = np.asarray(level.transpose("y", "x", "c").data)
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    peak = float(np.nanmax(arr)) if arr.size else 0.0
    if arr.dtype.kind == "f" and peak <= 1.0:
        top = 1.0  # floats in [0, 1]
    elif peak > 255:
        top = float(np.iinfo(arr.dtype).max) if arr.dtype.kind in "iu" else peak  # e.g. uint16
    else:
        top = 255.0
    return np.clip(np.round(arr.astype(np.float64) / top * 255), 0, 255).astype(np.uint8)


def _spot_diameter(kind: str, element, to_cs: np.ndarray) -> float | None:
    """Diameter of circles with one radius, in the units of the target space (None otherwise)."""
    if kind != "shapes" or "radius" not in element.columns:
        return None
    radius = np.unique(np.asarray(element["radius"], dtype=np.float64))
    if len(radius) != 1 or not np.isfinite(radius[0]) or radius[0] <= 0:
        return None
    return float(2 * radius[0] * _linear_scale(to_cs))


def _legacy_spatial(table, library_id: str | None, cs: str) -> dict:
    """A legacy ``uns['spatial']`` entry kept in the table (ours and spatialdata-io's converters write one)."""
    legacy = table.uns.get(SPATIAL)
    if not isinstance(legacy, dict) or not legacy:
        return {}
    for key in (library_id, cs):
        if key is not None and key in legacy:
            return dict(legacy[key])
    return dict(next(iter(legacy.values()))) if len(legacy) == 1 else {}


def read_spatialdata(path: PathLike, *, library_id: str | None = None, table_key: str | None = None,
                     coordinate_system: str | None = None, max_image_side: int = SDATA_MAX_IMAGE_SIDE):
    """Read one slice of a SpatialData ``.zarr`` store into the AnnData contract.

    Parameters
    ----------
    path
        The store (a directory written by ``SpatialData.write``, e.g. by spatialdata-io or by this
        pipeline's ``to-spatialdata``).
    library_id
        Value of ``obs['slice']``. It also picks the slice of a multi-slice store when a coordinate system
        has that name (as in the stores this pipeline writes). Default: the coordinate system's name,
        else the store's name without ``.zarr``.
    table_key
        The table to read. Default: the only table, else the one called ``table``.
    coordinate_system
        Default: ``library_id`` when it names a coordinate system, else ``global``, else the only one the
        table's spots share.
    max_image_side
        The H&E image level copied into ``uns['spatial']`` is the finest one whose longest side is at most
        this many pixels (else the coarsest level).

    Returns
    -------
    AnnData with one row per table row annotating spots in the chosen coordinate system:

    - ``X``, ``layers['counts']``: float32 CSR raw counts from the table's ``layers['counts']``, else its ``X``;
    - ``obs``: the table's columns (without the region and instance columns), ``obs['slice']``;
    - ``obsm['spatial']``: float64 (x, y) centroids of the annotated shapes, labels or points. With an RGB
      image in the coordinate system, in full-resolution pixels: the coordinate system's units when the
      image maps into it by a plain scale of at least 1 (the image is a downscaled copy, e.g. a Visium
      ``hires`` image), else the image's own pixels;
    - ``uns['spatial'][library_id]``: ``images`` (``fullres`` or ``hires``: RGB uint8, for the image
      steps), ``scalefactors`` (``tissue_hires_scalef``, ``spot_diameter_fullres`` when the spots are
      circles of one radius, and those of a legacy ``uns['spatial']`` entry of the table), ``metadata``;
    - ``uns['spatialdomains']['read']``: table, coordinate system, regions, image element and level, rows
      of other coordinate systems left out.

    Raises
    ------
    InputError
        Not a store, unreadable, no table or an ambiguous one, a table annotating no element or an element
        that is missing, spots the table names but the element lacks, ambiguous coordinate systems, bad
        counts or coordinates.

    Notes
    -----
    Files read: the store's ``tables/<table>``, the annotated ``shapes``/``labels``/``points`` elements and
    the H&E image element (one pyramid level).
    """
    import spatialdata as sd

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: SpatialData store not found")
    if not is_spatialdata_store(path):
        raise InputError(f"{path}: not a SpatialData store (expected a .zarr directory with zarr.json or .zgroup "
                         f"and some of {list(SDATA_ELEMENT_GROUPS)})")
    start = logg.info(f"reading {Format.SPATIALDATA} from {path}")
    try:
        sdata = sd.read_zarr(path)
    except Exception as e:  # zarr/ome-zarr/pydantic raise many kinds on broken stores
        raise InputError(f"{path}: cannot be read as a SpatialData store ({type(e).__name__}: {e})") from e
    tname, table = _pick_table(sdata, table_key, path)
    attrs = table.uns.get(SdataKey.ATTRS) or {}
    if not attrs.get(SdataKey.REGION):
        raise InputError(f"{path}: table {tname!r} annotates no spatial element (uns['{SdataKey.ATTRS}'] has no "
                         "region); its rows have no coordinates")
    region_key, instance_key = attrs[SdataKey.REGION_KEY], attrs[SdataKey.INSTANCE_KEY]
    regions = [attrs[SdataKey.REGION]] if isinstance(attrs[SdataKey.REGION], str) else list(attrs[SdataKey.REGION])
    elements = {}
    for r in regions:
        kind, el = _element(sdata, r)
        if el is None or kind == "images":
            raise InputError(f"{path}: table {tname!r} annotates {r!r}, which is not a shapes, labels or points "
                             "element of the store")
        elements[r] = (kind, el)
    for col in (region_key, instance_key):
        if col not in table.obs:
            raise InputError(f"{path}: table {tname!r} has no obs column {col!r} (its region/instance key)")
    cs = _pick_cs({r: _coordinate_systems(el) for r, (_k, el) in elements.items()}, wanted=coordinate_system,
                  library_id=library_id, path=path)
    used = [r for r, (_k, el) in elements.items() if cs in _coordinate_systems(el)]
    region_of = table.obs[region_key].astype(str).to_numpy()
    rows = np.isin(region_of, used)
    n_other = int((~rows).sum())
    if n_other:
        logg.info(f"    {n_other} rows of table {tname!r} annotate spots outside coordinate system {cs!r}; "
                  "they are not read (recorded)")
    adata = table[rows].copy()
    region_of = region_of[rows]

    xy = np.full((adata.n_obs, 2), np.nan)
    diameters = []
    for r in used:
        kind, el = elements[r]
        sel = np.flatnonzero(region_of == r)
        cent = sd.get_centroids(el, coordinate_system=cs)
        cent = cent.compute() if hasattr(cent, "compute") else cent
        ids = adata.obs[instance_key].to_numpy()[sel]
        pos = cent.index.get_indexer(pd.Index(ids).astype(cent.index.dtype, copy=False))
        if (pos < 0).any():
            bad = ids[pos < 0]
            raise InputError(f"{path}: {int((pos < 0).sum())} rows of table {tname!r} name instances of {r!r} that "
                             f"the element lacks (first {bad[0]!r}; {instance_key!r} must match the element's index)")
        xy[sel] = cent[list(_XY)].to_numpy(dtype=np.float64)[pos]
        diameters.append(_spot_diameter(kind, el, _affine(el, cs)))

    lib = library_id or (cs if cs != SdataKey.GLOBAL else path.name.removesuffix(ZARR_SUFFIX))
    legacy = _legacy_spatial(table, library_id, cs)
    scalefactors = dict(legacy.get(UnsSpatial.SCALEFACTORS) or {})
    metadata = {k: v for k, v in dict(legacy.get(UnsSpatial.METADATA) or {}).items()}
    images: dict[str, np.ndarray] = {}
    details: dict[str, Any] = {"files": [str(path)], "table": tname, "coordinate_system": cs, "regions": used,
                               "dropped_spots": {"other_coordinate_systems": n_other}}
    unit = cs
    to_full = np.eye(3)
    image_name = _pick_image(sdata, cs)
    if image_name is not None:
        el = sdata.images[image_name]
        levels = _levels(el)
        a_img = _affine(el, cs)
        s = _uniform_scale(a_img)
        if s is not None and s >= 1 - 1e-9:  # a downscaled copy: the coordinate system is the full-res grid
            s0 = 1.0 / s
        else:  # the image is the finer grid (or rotated/shifted): use its pixels
            to_full, s0 = np.linalg.inv(a_img), 1.0
        x0 = levels[0].sizes["x"]
        level_i = next((i for i, lv in enumerate(levels) if max(lv.sizes["x"], lv.sizes["y"]) <= max_image_side),
                       len(levels) - 1)
        factor = s0 * levels[level_i].sizes["x"] / x0
        key = UnsSpatial.HIRES if not np.isclose(factor, 1.0) else "fullres"
        images[key] = _as_rgb_uint8(levels[level_i])
        if key == UnsSpatial.HIRES:
            scalefactors["tissue_hires_scalef"] = float(factor)
        metadata["image_element"] = image_name
        details.update(image=image_name, image_level=int(level_i), image_scale_factor=float(factor))
        unit = Unit.PIXEL
    xy = _apply(to_full, xy)
    diameter = next((d for d in diameters if d is not None), None)
    if diameter is not None and "spot_diameter_fullres" not in scalefactors:
        scalefactors["spot_diameter_fullres"] = diameter * _linear_scale(to_full)

    adata.obs = adata.obs.drop(columns=[region_key, instance_key])
    adata.uns.pop(SdataKey.ATTRS, None)
    adata.uns.pop(SPATIAL, None)
    adata.obsm.pop(SPATIAL, None)
    check_unique(adata.obs_names, file=path, what="obs name")
    bad = ~np.isfinite(xy).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{path}: missing coordinates for row {adata.obs_names[i]!r} of table {tname!r} "
                         f"({int(bad.sum())} rows bad)")
    details["counts_from"] = use_raw_counts(adata, file=path)
    if images or scalefactors:
        adata.uns[SPATIAL] = {str(lib): {UnsSpatial.IMAGES: images, UnsSpatial.SCALEFACTORS: scalefactors,
                                         UnsSpatial.METADATA: {**metadata, "source": str(path)}}}
    adata = finalize(adata, xy=xy, library_id=str(lib), fmt=Format.SPATIALDATA, source=path, unit=unit, file=path,
                     details=details)
    logg.info(f"    finished: {adata.n_obs} spots x {adata.n_vars} genes", time=start,
              deep="added X, layers['counts'], obs (table), obsm['spatial'], uns['spatial'], "
                   "uns['spatialdomains']['read']")
    return adata


# --- writing ---------------------------------------------------------------------------------------
@dataclass
class _Run:
    method: str
    seed: int
    adata: Any
    path: Path

    @property
    def suffix(self) -> str:
        return f"{self.method}_s{self.seed}"


def _load_runs(paths: Sequence[PathLike]) -> list[_Run]:
    """Every method x seed of the clustered h5ads (seed as the report finds it), sorted by method then seed."""
    import anndata as ad

    from ..report._data import load_runs

    runs = []
    for p in paths:
        p = Path(p)
        adata = ad.read_h5ad(p)
        runs.extend(_Run(r.method, r.seed, adata, p) for r in load_runs(p))
    seen: dict[str, Path] = {}
    for r in runs:
        if r.suffix in seen:
            raise InputError(f"{r.path} and {seen[r.suffix]} both hold method {r.method!r} seed {r.seed}")
        seen[r.suffix] = r.path
    return sorted(runs, key=lambda r: (r.method, r.seed))


def _counts_union(runs: Sequence[_Run]) -> tuple[sp.csr_matrix, pd.DataFrame]:
    """Raw counts of every gene any run kept (runs keep their methods' own HVGs); the var columns all runs have."""
    blocks, var, seen = [], [], set()
    shared = [c for c in runs[0].adata.var.columns if all(c in r.adata.var for r in runs)
              and not c.startswith(("highly_variable", "hvg_"))]
    for r in runs:
        a = r.adata
        counts = a.layers[COUNTS_LAYER] if COUNTS_LAYER in a.layers else a.X
        new = [i for i, g in enumerate(a.var_names) if g not in seen]
        if not new:
            continue
        seen.update(a.var_names[new])
        blocks.append(sp.csr_matrix(counts)[:, new].astype(np.float32))
        var.append(a.var.iloc[new][shared])
    return sp.hstack(blocks, format="csr"), pd.concat(var)


def _radius(xy: np.ndarray, scalefactors: Mapping[str, Any]) -> tuple[float, str]:
    if scalefactors.get("spot_diameter_fullres"):
        return float(scalefactors["spot_diameter_fullres"]) / 2, "spot_diameter_fullres"
    if len(xy) < 2:
        return 1.0, "default"
    from scipy.spatial import cKDTree

    d, _ = cKDTree(xy).query(xy, k=2)
    nn = float(np.median(d[:, 1]))
    return (nn / 2 if nn > 0 else 1.0), "half the median nearest-neighbour distance"


def _image_element(slot: Mapping[str, Any], sheet_image: Path | None, cs: str):
    """The slice's H&E as an image element in ``cs`` (full-res pixels), or None."""
    import dask.array as da
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import Identity, Scale

    if sheet_image is not None:
        arr, factor, source = _open_full_image(sheet_image), 1.0, str(sheet_image)
    else:
        images = dict(slot.get(UnsSpatial.IMAGES) or {})
        scalefactors = dict(slot.get(UnsSpatial.SCALEFACTORS) or {})
        key = next((k for k in ("fullres", UnsSpatial.HIRES, UnsSpatial.LOWRES)
                    if k in images and (k == "fullres" or f"tissue_{k}_scalef" in scalefactors)), None)
        if key is None:
            return None, None
        arr = da.from_array(np.asarray(images[key]))
        factor = 1.0 if key == "fullres" else float(scalefactors[f"tissue_{key}_scalef"])
        source = f"uns['spatial'][{cs!r}]['images'][{key!r}]"
    if arr.ndim == 2:
        arr = da.stack([arr] * 3, axis=-1)
    arr = arr[..., :3]
    transform = Identity() if factor == 1.0 else Scale([1 / factor, 1 / factor], axes=_XY)
    big = max(arr.shape[:2]) > SDATA_PYRAMID_MIN_SIDE
    element = Image2DModel.parse(arr, dims=("y", "x", "c"), c_coords=list(SdataKey.CHANNELS),
                                 transformations={cs: transform}, scale_factors=list(SDATA_PYRAMID) if big else None,
                                 chunks=(3, 1024, 1024) if big else None)
    return element, {"source": source, "scale_factor": factor}


def _open_full_image(path: Path):
    """A full-resolution image file as a (lazy, for TIFF) dask array (y, x[, c])."""
    import dask.array as da

    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile
        import zarr

        store = tifffile.imread(path, aszarr=True, level=0)
        return da.from_zarr(zarr.open(store, mode="r"))
    return da.from_array(load_image(path))


def to_spatialdata(runs: Sequence[_Run], *, images: Mapping[str, PathLike] | None = None):
    """Build the group's SpatialData object from its clustered runs (see :func:`write_group_spatialdata`)."""
    import anndata as ad
    from spatialdata import SpatialData
    from spatialdata.models import ShapesModel, TableModel
    from spatialdata.transformations import Identity

    if not runs:
        raise InputError("no clustered runs to write")
    base = runs[0].adata
    names = base.obs_names
    for r in runs[1:]:
        if len(r.adata.obs_names) != len(names) or not r.adata.obs_names.isin(names).all():
            raise InputError(f"{r.path}: its spots differ from those of {runs[0].path} "
                             f"({r.adata.n_obs} vs {base.n_obs}); runs of one group share the spots")
    aligned = [r.adata[names] if not r.adata.obs_names.equals(names) else r.adata for r in runs]
    counts, var = _counts_union([_Run(r.method, r.seed, a, r.path) for r, a in zip(runs, aligned)])
    obs = base.obs[[c for c in base.obs.columns if not c.startswith("domain_")]].copy()
    slices = [str(s) for s in obs[SLICE_KEY].cat.categories] if SLICE_KEY in obs else ["global"]
    slice_of = obs[SLICE_KEY].astype(str).to_numpy() if SLICE_KEY in obs else np.full(len(obs), slices[0])
    obs[SdataKey.REGION_COLUMN] = pd.Categorical([SdataKey.SPOTS.format(s) for s in slice_of],
                                                 categories=[SdataKey.SPOTS.format(s) for s in slices])
    instance = np.zeros(len(obs), dtype=np.int64)
    for s in slices:
        idx = np.flatnonzero(slice_of == s)
        instance[idx] = np.arange(len(idx))
    obs[SdataKey.INSTANCE_COLUMN] = instance
    obsm = {SPATIAL: np.asarray(base.obsm[SPATIAL], dtype=np.float64)[:, :2]}
    run_info = {}
    for r, a in zip(runs, aligned):
        dk, ek = f"{domain_key(r.method)}_s{r.seed}", f"{embedding_key(r.method)}_s{r.seed}"
        obs[dk] = pd.Categorical(a.obs[domain_key(r.method)].astype(str).where(a.obs[domain_key(r.method)].notna()))
        if embedding_key(r.method) in a.obsm:
            obsm[ek] = np.asarray(a.obsm[embedding_key(r.method)], dtype=np.float32)
        run_info[dk] = {"method": r.method, "seed": int(r.seed), "embedding_key": ek if ek in obsm else "",
                        "source": r.path.name}
    table = ad.AnnData(X=counts, obs=obs, var=var, obsm=obsm, layers={COUNTS_LAYER: counts.copy()})

    legacy = dict(base.uns.get(SPATIAL) or {})
    images = {str(k): Path(v) for k, v in (images or {}).items()}
    unknown = sorted(set(images) - set(slices))
    if unknown:
        raise InputError(f"image(s) given for slice(s) {unknown} that are not in the group ({slices})")
    shapes, image_elements, spots_info, uns_spatial = {}, {}, {}, {}
    for s in slices:
        idx = np.flatnonzero(slice_of == s)
        slot = dict(legacy.get(s) or {})
        scalefactors = dict(slot.get(UnsSpatial.SCALEFACTORS) or {})
        xy = obsm[SPATIAL][idx]
        radius, radius_from = _radius(xy, scalefactors)
        shapes[SdataKey.SPOTS.format(s)] = ShapesModel.parse(
            xy, geometry=0, radius=np.full(len(idx), radius), index=np.arange(len(idx)),
            transformations={s: Identity()})
        spots_info[s] = {"radius": radius, "radius_from": radius_from}
        element, info = _image_element(slot, images.get(s), s)
        if element is not None:
            image_elements[SdataKey.IMAGE.format(s)] = element
            spots_info[s]["image"] = info
        uns_spatial[s] = {UnsSpatial.SCALEFACTORS: scalefactors,
                          UnsSpatial.METADATA: dict(slot.get(UnsSpatial.METADATA) or {})}
    table.uns[SPATIAL] = uns_spatial
    table.uns[UNS_KEY] = {"runs": run_info, "slices": spots_info}
    table = TableModel.parse(table, region=[SdataKey.SPOTS.format(s) for s in slices],
                             region_key=SdataKey.REGION_COLUMN, instance_key=SdataKey.INSTANCE_COLUMN)
    return SpatialData(images=image_elements, shapes=shapes, tables={SdataKey.TABLE: table})


def write_spatialdata_atomic(sdata, path: PathLike) -> Path:
    """``sdata.write`` into a temporary store beside ``path``, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.")) / path.name
    try:
        sdata.write(tmp, overwrite=False, update_sdata_path=False)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)
    return path


def write_group_spatialdata(clustered: Sequence[PathLike], output: PathLike, *,
                            images: Mapping[str, PathLike] | None = None) -> Path:
    """Write a group's clustered runs as one SpatialData store.

    Parameters
    ----------
    clustered
        The group's clustered ``.h5ad`` files (every method and seed; one file may hold several methods).
        They must share their spots.
    output
        The ``.zarr`` store to write (atomically: a temporary store renamed onto it).
    images
        ``{slice: full-resolution H&E file}`` (the sample sheet's ``image`` column). A slice without one
        gets the best image of its ``uns['spatial']`` entry (``fullres``, then ``hires``, then ``lowres``).

    Returns
    -------
    ``output``. The store holds, per slice ``<s>`` (coordinate system ``<s>``, full-resolution pixels):

    - ``shapes/<s>_spots``: circles at ``obsm['spatial']``, radius ``spot_diameter_fullres / 2`` when the
      scale factors have it (Visium spots, Visium HD bins), else half the median nearest-neighbour distance;
    - ``images/<s>_image``: the H&E (RGB), with a scale transformation when it is a downscaled copy;

    and one table ``table`` annotating every ``<s>_spots`` (``obs['region']``, ``obs['instance_id']``):
    raw counts of every gene any method kept in ``X`` and ``layers['counts']``, ``obs`` of the first run
    (``slice``, ``truth``, QC columns), ``obs['domain_<method>_s<seed>']`` and
    ``obsm['X_<method>_s<seed>']`` for every run, ``obsm['spatial']``, ``uns['spatial']`` (scale factors and
    metadata per slice, no images) and ``uns['spatialdomains']`` (``runs``: per domain column its method,
    seed, embedding key and source file; ``slices``: the circles' radius and image source per slice).
    """
    start = logg.info(f"writing SpatialData store {output}")
    missing = [str(p) for p in clustered if not Path(p).is_file()]
    if missing:
        raise InputError(f"clustered h5ad not found: {', '.join(missing)}")
    for s, p in (images or {}).items():
        if not Path(p).is_file():
            raise InputError(f"{p}: H&E image of slice {s!r} not found")
    sdata = to_spatialdata(_load_runs(clustered), images=images)
    out = write_spatialdata_atomic(sdata, output)
    logg.info(f"    finished: {len(sdata.shapes)} slice(s), {sdata.tables[SdataKey.TABLE].n_obs} spots", time=start)
    return out
