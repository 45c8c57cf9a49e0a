"""Spot-centred patches from a histology image (spec A3.1), read lazily and padded at the borders.

Differences from the reference, on purpose:

- The patch side comes from ``scalefactors['fiducial_diameter_fullres']`` (the reference hard-codes 144 px
  for 151673), times ``size_factor`` (3.5).
- Patches that cross the image border are **padded** (``pad='reflect'`` or ``'constant'``); the reference's
  numpy slicing silently truncates them, so border spots got smaller, stretched patches.
- Patches are taken from the full-resolution image, or from the hires/lowres image in
  ``uns['spatial'][library_id]['images']`` with coordinates and patch side scaled by the matching
  ``tissue_<scale>_scalef`` (``s``). Coordinates map as ``(x + 0.5) s - 0.5``, exact for area-downsampled
  images (scanpy's plots use ``x s``; the difference is under half a low-res pixel). Upsampling uses a
  sub-pixel exact bilinear warp, downsampling area averaging (the reference resizes 504 -> 512 bilinear,
  which is the upsampling case).
- Large images are read in horizontal strips (TIFF via ``tifffile.memmap`` when uncompressed, else a zarr
  store over the tiles), so the image is never held in memory, let alone twice.

Coordinates: ``obsm['spatial']`` holds (x, y) = (column, row) in full-resolution pixels, pixel centres at
integer positions; a spot's patch covers ``[x - p/2, x + p/2] x [y - p/2, y + p/2]`` in continuous coordinates.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from .. import _logging as logg
from .._constants import SPATIAL
from .._utils import InputError

__all__ = ["extract_patches", "iter_patches", "crop_patches", "open_image", "resolve_image", "ImageSource",
           "ResolvedImage", "SCALES", "PADS"]

SCALES = ("auto", "fullres", "hires", "lowres")
PADS = ("reflect", "constant")
#: Patches narrower than this many source pixels trigger the low-resolution warning.
LOW_RES_PX = 64
#: Rough byte budget of one strip of a large image.
STRIP_BYTES = 64 * 2**20
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


# --- image sources ------------------------------------------------------------------------------------
class ImageSource:
    """A 2-D image read by windows: ``read(y0, y1, x0, x1)`` -> ``(h, w, 3)`` uint8 RGB (in-bounds only).

    Wraps an in-memory array, a TIFF memmap, a zarr store over TIFF tiles or an OpenCV-decoded PNG/JPEG.
    ``name`` is what error messages call the image (a file path or an ``uns`` slot). ``axes`` uses Y (rows),
    X (columns), S (channels) and Q (any other axis; its first plane is read).
    """

    def __init__(self, array, name: str, *, axes: str = "YXS", bgr: bool = False, closer=None,
                 float_range: float | None = None):
        self._array = array
        self.name = name
        axes = axes.upper()
        if axes.count("Y") != 1 or axes.count("X") != 1 or axes.count("S") > 1 or set(axes) - set("YXSQ"):
            raise InputError(f"image {name}: cannot use axes {axes!r} (need one Y, one X, at most one channel axis)")
        self._axes = axes
        self._bgr = bgr
        self._closer = closer
        shape = tuple(int(s) for s in array.shape)
        self.height = shape[axes.index("Y")]
        self.width = shape[axes.index("X")]
        self._float_range = float_range

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels of rows ``[y0, y1)`` and columns ``[x0, x1)`` (must lie inside the image) as RGB uint8."""
        index: list = [0] * len(self._axes)  # other axes ('Q'): first plane
        for i, a in enumerate(self._axes):
            if a == "Y":
                index[i] = slice(y0, y1)
            elif a == "X":
                index[i] = slice(x0, x1)
            elif a == "S":
                index[i] = slice(None)
        try:
            block = np.asarray(self._array[tuple(index)])
        except Exception as err:  # noqa: BLE001 - truncated/corrupt tiles surface here
            raise InputError(f"could not read pixels of image {self.name} (rows {y0}:{y1}, columns {x0}:{x1}): "
                             f"{type(err).__name__}: {err}") from err
        kept = [a for a in self._axes if a in "YXS"]
        block = np.transpose(block, [kept.index(a) for a in "YXS" if a in kept])
        return _to_rgb_uint8(block, bgr=self._bgr, float_range=self._float_range)

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
            self._closer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"ImageSource({self.name!r}, {self.width}x{self.height})"


def _to_rgb_uint8(block: np.ndarray, *, bgr: bool = False, float_range: float | None = None) -> np.ndarray:
    if block.ndim == 2:
        block = block[..., None]
    if block.shape[-1] >= 3:
        block = block[..., :3]
        if bgr:
            block = block[..., ::-1]
    else:  # grey or grey + alpha
        block = np.repeat(block[..., :1], 3, axis=-1)
    if block.dtype == np.uint8:
        return np.ascontiguousarray(block)
    if block.dtype == np.uint16:
        return (block.astype(np.uint32) // 257).astype(np.uint8)
    if block.dtype == bool:
        return block.astype(np.uint8) * 255
    if np.issubdtype(block.dtype, np.floating):
        scale = 255.0 if (float_range or 1.0) <= 1.0 + 1e-6 else 1.0
        return np.clip(np.rint(block.astype(np.float32) * scale), 0, 255).astype(np.uint8)
    info = np.iinfo(block.dtype)
    return np.clip(block.astype(np.float64) * (255.0 / max(info.max, 1)), 0, 255).astype(np.uint8)


def _from_array(array: np.ndarray, name: str) -> ImageSource:
    array = np.asarray(array)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 2, 3, 4)):
        raise InputError(f"image {name} has shape {array.shape}; expected (rows, columns) or (rows, columns, "
                         "channels) with 1-4 channels")
    float_range = float(np.nanmax(array)) if np.issubdtype(array.dtype, np.floating) and array.size else None
    return ImageSource(array, name, axes="YX" if array.ndim == 2 else "YXS", float_range=float_range)


def open_image(path: str | os.PathLike) -> ImageSource:
    """Open a TIFF (lazily: memmap or zarr over tiles) or a PNG/JPEG (decoded once with OpenCV).

    Raises :class:`InputError` naming the file when it is missing, unreadable or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image file {path} does not exist")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic in _TIFF_MAGIC:
        return _open_tiff(path)
    import cv2

    try:
        array = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except Exception as err:  # noqa: BLE001
        raise InputError(f"could not read image file {path}: {err}") from err
    if array is None:
        raise InputError(f"could not read image file {path}: not a readable TIFF/PNG/JPEG (corrupted or "
                         "unsupported format)")
    return ImageSource(array, str(path), axes="YXS", bgr=True)


def _open_tiff(path: Path) -> ImageSource:
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
        series = tif.series[0]
        axes = series.axes
        dtype = series.dtype
        shape = series.shape
        if len(shape) < 2:
            raise ValueError(f"series 0 has shape {shape}")
    except Exception as err:  # noqa: BLE001
        raise InputError(f"could not read TIFF image {path}: {type(err).__name__}: {err}") from err
    try:
        _check_tiff_data(tif, series, path)
    except InputError:
        tif.close()
        raise
    axes = _tiff_axes(axes, shape)
    try:
        array = tifffile.memmap(path, series=0, mode="r")
        closer = tif.close
    except Exception:  # noqa: BLE001 - compressed or tiled: read through a zarr store of tiles
        try:
            import zarr

            store = series.aszarr(level=0)
            array = zarr.open(store, mode="r")

            def closer():
                store.close()
                tif.close()
        except Exception as err:  # noqa: BLE001
            tif.close()
            raise InputError(f"could not open TIFF image {path} for windowed reading: {err}") from err
    if tuple(array.shape) != tuple(shape):
        tif.close()
        raise InputError(f"TIFF image {path}: pixel array shape {array.shape} does not match series {shape}")
    return ImageSource(array, str(path), axes=axes, closer=closer,
                       float_range=1.0 if np.issubdtype(dtype, np.floating) else None)


def _check_tiff_data(tif, series, path: Path) -> None:
    """Fail early, naming the file, when pixel data are missing or lie beyond the end of the file."""
    size = path.stat().st_size
    for page in series.pages:
        if page is None:
            continue
        offsets, counts = getattr(page, "dataoffsets", ()), getattr(page, "databytecounts", ())
        if len(offsets) == 0 or len(offsets) != len(counts):
            raise InputError(f"TIFF image {path} is corrupted: page {page.index} has no pixel data offsets")
        end = max(int(o) + int(c) for o, c in zip(offsets, counts))
        if end > size:
            raise InputError(f"TIFF image {path} is truncated: pixel data end at byte {end} but the file has {size} "
                             "bytes (incomplete copy or download?)")


def _tiff_axes(axes: str, shape: tuple) -> str:
    """Map tifffile axis codes to Y, X, one channel axis (S) and singleton others (Q)."""
    axes = axes.upper()
    out = []
    chan_seen = False
    for a, n in zip(axes, shape):
        if a in "YX":
            out.append(a)
        elif a in "SC" and not chan_seen and n <= 4:
            out.append("S")
            chan_seen = True
        else:
            out.append("Q")  # other axes: first plane is used
    return "".join(out)


# --- resolving which image, which scale, which diameter ----------------------------------------------
class ResolvedImage:
    """An image source plus the numbers that tie it to ``obsm['spatial']``.

    ``factor`` multiplies full-resolution coordinates into this image's pixels; ``diameter_fullres`` is the
    fiducial diameter in full-resolution pixels; ``scale`` names the resolution used.
    """

    def __init__(self, source: ImageSource, scale: str, factor: float, diameter_fullres: float,
                 library_id: str | None):
        self.source = source
        self.scale = scale
        self.factor = float(factor)
        self.diameter_fullres = float(diameter_fullres)
        self.library_id = library_id

    def patch_src_px(self, size_factor: float) -> float:
        return size_factor * self.diameter_fullres * self.factor


def _library(adata, library_id: str | None) -> tuple[str | None, dict]:
    spatial = adata.uns.get(SPATIAL)
    if not isinstance(spatial, dict) or not spatial:
        if library_id is not None:
            raise InputError(f"library_id {library_id!r} given but adata.uns['{SPATIAL}'] is missing or empty")
        return None, {}
    if library_id is None:
        if len(spatial) > 1:
            raise InputError(f"adata.uns['{SPATIAL}'] holds several libraries {sorted(spatial)}; pass library_id")
        library_id = next(iter(spatial))
    if library_id not in spatial:
        raise InputError(f"library_id {library_id!r} not in adata.uns['{SPATIAL}'] (has {sorted(spatial)})")
    return library_id, spatial[library_id]


def resolve_image(adata, image=None, *, library_id: str | None = None, scale: str | float = "auto",
                  diameter: float | None = None) -> ResolvedImage:
    """Decide which image and scale factor to use for ``adata``'s spots.

    Parameters
    ----------
    image
        ``None``: an image of ``uns['spatial'][library_id]['images']`` (``scale='auto'`` takes the best one
        present: fullres, hires, then lowres). A path: a full-resolution image unless ``scale`` says 'hires' or
        'lowres' (then the matching ``tissue_<scale>_scalef`` applies). An array: same, held in memory.
    scale
        'auto', 'fullres', 'hires', 'lowres', or a number (full-res pixels -> image pixels).
    diameter
        Fiducial diameter in full-resolution pixels; default ``scalefactors['fiducial_diameter_fullres']``.
    """
    lib_id, lib = _library(adata, library_id)
    scalefactors = dict(lib.get("scalefactors", {}) or {})
    slot = f"adata.uns['{SPATIAL}']['{lib_id}']"
    if isinstance(scale, str) and scale not in SCALES:
        raise InputError(f"scale must be one of {SCALES} or a number, not {scale!r}")

    if image is None:
        images = dict(lib.get("images", {}) or {})
        if not images:
            raise InputError(f"no image given and {slot}['images'] holds none; pass an image file "
                             "(--image) or read the slice with its images")
        if scale == "auto":
            scale = next((s for s in ("fullres", "hires", "lowres") if s in images), None)
            if scale is None:
                raise InputError(f"{slot}['images'] has {sorted(images)}, none of fullres/hires/lowres")
        if not isinstance(scale, str) or scale not in images:
            raise InputError(f"{slot}['images'] has no {scale!r} image (has {sorted(images)})")
        source = _from_array(images[scale], f"{slot}['images']['{scale}']")
    elif isinstance(image, (str, os.PathLike)):
        source = open_image(image)
        scale = "fullres" if scale == "auto" else scale
    else:
        source = _from_array(image, "the image array")
        scale = "fullres" if scale == "auto" else scale

    if isinstance(scale, str):
        if scale == "fullres":
            factor = 1.0
        else:
            key = f"tissue_{scale}_scalef"
            if key not in scalefactors:
                source.close()
                raise InputError(f"scale {scale!r} needs scalefactors[{key!r}] in {slot}['scalefactors'] "
                                 f"(has {sorted(scalefactors)})")
            factor = float(scalefactors[key])
    else:
        factor = float(scale)
        scale = f"x{factor:g}"
    if diameter is None:
        diameter = scalefactors.get("fiducial_diameter_fullres")
        if diameter is None and "spot_diameter_fullres" in scalefactors:
            # Visium: fiducial frame spots are 1.5x the capture spots (65 um spacing, 55 um spots).
            diameter = 1.5 * float(scalefactors["spot_diameter_fullres"])
            logg.warning(f"{slot}['scalefactors'] has no fiducial_diameter_fullres; using 1.5 x "
                         f"spot_diameter_fullres = {diameter:.1f} px")
        if diameter is None:
            source.close()
            raise InputError(f"no fiducial diameter: {slot}['scalefactors'] lacks fiducial_diameter_fullres; pass "
                             "diameter (full-resolution pixels) / --diameter")
    diameter = float(diameter)
    if not (math.isfinite(diameter) and diameter > 0 and math.isfinite(factor) and factor > 0):
        source.close()
        raise InputError(f"invalid fiducial diameter {diameter} or scale factor {factor} for {source.name}")
    return ResolvedImage(source, scale, factor, diameter, lib_id)


# --- cropping ---------------------------------------------------------------------------------------
def _check_inside(xy: np.ndarray, source: ImageSource, factor: float, scale: str, obs_names=None) -> None:
    bad_nan = ~np.isfinite(xy).all(axis=1)
    if bad_nan.any():
        i = int(np.flatnonzero(bad_nan)[0])
        raise InputError(f"{int(bad_nan.sum())} spots have non-finite coordinates in obsm['{SPATIAL}'] "
                         f"(first: {_spot_name(i, obs_names)})")
    h, w = source.height, source.width
    outside = (xy[:, 0] < -0.5) | (xy[:, 0] > w - 0.5) | (xy[:, 1] < -0.5) | (xy[:, 1] > h - 0.5)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise InputError(
            f"{int(outside.sum())} of {len(xy)} spot centres fall outside image {source.name} "
            f"({w}x{h} px) at scale {scale!r} (factor {factor:g}); first: {_spot_name(i, obs_names)} at "
            f"(x, y) = ({xy[i, 0]:.1f}, {xy[i, 1]:.1f}). The scalefactors do not match this image: is it the "
            "full-resolution image of this slice, and are obsm['spatial'] (x, y) full-resolution pixels?")
    if len(xy) >= 10 and xy[:, 0].max() < 0.35 * w and xy[:, 1].max() < 0.35 * h:
        logg.warning(f"all spots lie in the top-left {100 * max(xy[:, 0].max() / w, xy[:, 1].max() / h):.0f}% of "
                     f"image {source.name}; the scale factor ({scale!r}, {factor:g}) may not match the image")


def _spot_name(i: int, obs_names) -> str:
    return f"spot {obs_names[i]!r}" if obs_names is not None else f"spot {i}"


def _round(v: float) -> int:
    return int(math.floor(v + 0.5))


def _window(strip: np.ndarray, strip_y0: int, height: int, width: int, y0: int, y1: int, x0: int, x1: int,
            pad: str, pad_value: int) -> np.ndarray:
    """Rows ``[y0, y1)``, columns ``[x0, x1)`` of the image (which ``strip`` covers from row ``strip_y0``)."""
    cy0, cy1 = max(y0, 0), min(y1, height)
    cx0, cx1 = max(x0, 0), min(x1, width)
    block = strip[cy0 - strip_y0:cy1 - strip_y0, cx0:cx1]
    widths = ((cy0 - y0, y1 - cy1), (cx0 - x0, x1 - cx1), (0, 0))
    if any(a or b for a, b in widths[:2]):
        if pad == "reflect" and min(block.shape[:2]) > 1:
            block = np.pad(block, widths, mode="reflect")
        elif pad == "reflect":
            block = np.pad(block, widths, mode="edge")
        else:
            block = np.pad(block, widths, mode="constant", constant_values=pad_value)
    return block


def _one_patch(strip, strip_y0, source, cx, cy, p_src, patch_px, pad, pad_value):
    import cv2

    if patch_px >= p_src:  # upsampling: sub-pixel exact bilinear warp of a padded window
        half = p_src / 2.0
        x0, x1 = math.floor(cx - half) - 1, math.ceil(cx + half) + 2
        y0, y1 = math.floor(cy - half) - 1, math.ceil(cy + half) + 2
        win = _window(strip, strip_y0, source.height, source.width, y0, y1, x0, x1, pad, pad_value)
        a = p_src / patch_px
        # output pixel u samples the source at cx - p/2 + (u + 0.5) * a (pixel centres at integers)
        m = np.array([[a, 0.0, cx - half + 0.5 * a - x0],
                      [0.0, a, cy - half + 0.5 * a - y0]], dtype=np.float64)
        return cv2.warpAffine(np.ascontiguousarray(win), m, (patch_px, patch_px),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101)
    side = max(1, _round(p_src))  # downsampling: integer crop centred on the spot, then area averaging
    x0 = _round(cx - (side - 1) / 2.0)
    y0 = _round(cy - (side - 1) / 2.0)
    win = _window(strip, strip_y0, source.height, source.width, y0, y0 + side, x0, x0 + side, pad, pad_value)
    return cv2.resize(np.ascontiguousarray(win), (patch_px, patch_px), interpolation=cv2.INTER_AREA)


def crop_patches(source: ImageSource | np.ndarray, xy: np.ndarray, patch_src_px: float, patch_px: int, *,
                 pad: Literal["reflect", "constant"] = "reflect", pad_value: int = 255,
                 chunk_size: int = 256) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(indices, patches)`` chunks: square patches of ``patch_src_px`` image pixels centred on ``xy``.

    Parameters
    ----------
    source
        The image (an :class:`ImageSource` or an array ``(rows, cols[, channels])``).
    xy
        ``(N, 2)`` spot centres (x = column, y = row) in this image's pixels.
    patch_src_px
        Patch side in image pixels (may be fractional; sub-pixel exact when upsampling).
    patch_px
        Output side; patches are resized to ``patch_px x patch_px``.
    pad
        Border handling for patches that cross the image edge: mirror the image ('reflect') or fill with
        ``pad_value`` ('constant'; 255 = white, like bare glass).

    Yields
    ------
    ``indices`` (int64, into ``xy``) and ``patches`` ``(len(indices), patch_px, patch_px, 3)`` uint8 RGB. Spots
    are visited in row bands (so a large image is decoded about once), not in input order.
    """
    if pad not in PADS:
        raise InputError(f"pad must be one of {PADS}, not {pad!r}")
    if not isinstance(source, ImageSource):
        source = _from_array(source, "the image array")
    xy = np.asarray(xy, dtype=np.float64)
    n = len(xy)
    if n == 0:
        return
    patch_px = int(patch_px)
    if patch_px < 1 or not (patch_src_px > 0):
        raise InputError(f"patch sizes must be positive (patch_px={patch_px}, patch_src_px={patch_src_px})")
    order = np.argsort(xy[:, 1], kind="stable")
    margin = int(math.ceil(patch_src_px / 2.0)) + 3
    band = max(1, int(STRIP_BYTES // max(1, 3 * source.width)) - 2 * margin, int(math.ceil(patch_src_px)))
    start = 0
    while start < n:
        y_first = xy[order[start], 1]
        stop = int(np.searchsorted(xy[order, 1], y_first + band, side="left"))
        stop = max(stop, start + 1)
        members = order[start:stop]
        ys = xy[members, 1]
        sy0 = max(0, math.floor(ys.min()) - margin)
        sy1 = min(source.height, math.ceil(ys.max()) + margin + 1)
        strip = source.read(sy0, sy1, 0, source.width)
        for c in range(0, len(members), chunk_size):
            idx = members[c:c + chunk_size]
            out = np.empty((len(idx), patch_px, patch_px, 3), dtype=np.uint8)
            for k, i in enumerate(idx):
                out[k] = _one_patch(strip, sy0, source, xy[i, 0], xy[i, 1], patch_src_px, patch_px, pad, pad_value)
            yield idx.astype(np.int64), out
        del strip
        start = stop


# --- AnnData entry points ----------------------------------------------------------------------------
def _prepare(adata, image, library_id, scale, size_factor, diameter, patch_px):
    if SPATIAL not in adata.obsm:
        raise InputError(f"adata.obsm['{SPATIAL}'] is missing: spot coordinates are needed to cut patches")
    coords = np.asarray(adata.obsm[SPATIAL], dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] < 2:
        raise InputError(f"adata.obsm['{SPATIAL}'] has shape {coords.shape}; expected (n_spots, 2)")
    if not (size_factor > 0):
        raise InputError(f"size_factor must be positive, not {size_factor}")
    res = resolve_image(adata, image, library_id=library_id, scale=scale, diameter=diameter)
    # pixel-area convention: pixel k covers [k - 0.5, k + 0.5]; an image downscaled by s maps x -> (x + 0.5) s - 0.5
    xy = (coords[:, :2] + 0.5) * res.factor - 0.5
    try:
        _check_inside(xy, res.source, res.factor, res.scale, obs_names=np.asarray(adata.obs_names))
    except InputError:
        res.source.close()
        raise
    p_src = res.patch_src_px(size_factor)
    if p_src < LOW_RES_PX:
        logg.warning(f"patches are only {p_src:.1f} px wide in the {res.scale} image {res.source.name} (resized "
                     f"to {patch_px} px): low resolution limits the texture the image features can carry; use the "
                     "full-resolution image when available")
    return res, xy, p_src


def iter_patches(adata, image=None, *, library_id: str | None = None, size_factor: float = 3.5,
                 patch_px: int = 512, scale: str | float = "auto", pad: Literal["reflect", "constant"] = "reflect",
                 pad_value: int = 255, diameter: float | None = None,
                 chunk_size: int = 256) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Like :func:`extract_patches` but yield ``(spot indices, patches)`` chunks (memory bounded by the chunk)."""
    res, xy, p_src = _prepare(adata, image, library_id, scale, size_factor, diameter, patch_px)
    with res.source:
        yield from crop_patches(res.source, xy, p_src, patch_px, pad=pad, pad_value=pad_value,
                                chunk_size=chunk_size)


def extract_patches(adata, image=None, *, library_id: str | None = None, size_factor: float = 3.5,
                    patch_px: int = 512, scale: str | float = "auto",
                    pad: Literal["reflect", "constant"] = "reflect", pad_value: int = 255,
                    diameter: float | None = None, out: str | os.PathLike | np.ndarray | None = None) -> np.ndarray:
    """Cut one square RGB patch per spot, centred on ``obsm['spatial']`` (spec A3.1, with border padding).

    The patch side is ``size_factor x`` the fiducial diameter (``uns['spatial'][library_id]['scalefactors']
    ['fiducial_diameter_fullres']``, or ``diameter``), scaled into the chosen image, then resized to
    ``patch_px``. A lowres image works (e.g. the 600x600 DLPFC PNG) but warns that it limits texture.

    Parameters
    ----------
    adata
        Spots with ``obsm['spatial']`` = (x, y) full-resolution pixels.
    image
        Image file (TIFF read lazily; PNG/JPEG), an array, or ``None`` for ``uns['spatial'][library_id]['images']``.
    library_id
        Library in ``uns['spatial']``; needed only when there are several.
    size_factor
        Patch side in fiducial diameters (reference: 3.5).
    patch_px
        Output patch side in pixels (reference: 512; smaller is faster).
    scale
        Resolution of ``image``: 'fullres', 'hires', 'lowres', 'auto' or a number; see :func:`resolve_image`.
    pad
        'reflect' (default) or 'constant' (``pad_value``) for patches crossing the image border. The reference
        truncated such patches; we pad so every patch covers the same tissue area around its spot.
    out
        ``None`` (array in memory), a path (an ``.npy`` memmap written there, for large N), or an array to fill.

    Returns
    -------
    ``(n_obs, patch_px, patch_px, 3)`` uint8 RGB patches in ``adata.obs`` order.

    Raises
    ------
    InputError
        Unreadable/corrupted image (names the file); spot centres outside the image (mismatched scalefactors);
        missing scalefactors.
    """
    start = logg.info(f"cutting {adata.n_obs} patches ({size_factor:g} x fiducial diameter -> {patch_px} px)")
    shape = (adata.n_obs, int(patch_px), int(patch_px), 3)
    res, xy, p_src = _prepare(adata, image, library_id, scale, size_factor, diameter, patch_px)
    with res.source:
        if out is None:
            arr = np.empty(shape, dtype=np.uint8)
        elif isinstance(out, (str, os.PathLike)):
            arr = np.lib.format.open_memmap(out, mode="w+", dtype=np.uint8, shape=shape)
        else:
            arr = out
            if arr.shape != shape:
                raise InputError(f"out has shape {arr.shape}; expected {shape}")
        for idx, patches in crop_patches(res.source, xy, p_src, patch_px, pad=pad, pad_value=pad_value):
            arr[idx] = patches
    if isinstance(arr, np.memmap):
        arr.flush()
    logg.info("finished cutting patches", time=start,
              deep=f"{res.scale} image {res.source.name}, {p_src:.1f} source px per patch")
    return arr
