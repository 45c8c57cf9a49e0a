"""Per-spot image features: patches -> filter -> BYOL -> StandardScaler + PCA (spec A3.4) -> ``obsm['X_image']``."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import _logging as logg
from .._constants import IMAGE_FEATURES, SLICE_KEY, SPATIAL
from .._utils import InputError, record
from ._progress import Progress, fmt_seconds

__all__ = ["image_features", "pca_features", "filtered_tiles"]

#: Stacks larger than this are kept in a temporary ``.npy`` memmap instead of RAM.
IN_MEMORY_BYTES = 2 * 2**30


def pca_features(embeddings: np.ndarray, n_components: int = 16, *, random_state: int = 42,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """StandardScaler over the embedding dimensions, then PCA (spec A3.4; reference ``random_state=42``).

    Returns ``(features (N, q) float32, explained_variance_ratio (q,))`` with
    ``q = min(n_components, N, D)``. Constant dimensions (scale 0) are left at 0 by the scaler.
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise InputError(f"embeddings have shape {x.shape}; need (N >= 2, D)")
    if not np.isfinite(x).all():
        raise InputError("embeddings contain NaN/inf; the image model diverged")
    q = int(min(n_components, x.shape[0], x.shape[1]))
    if q < n_components:
        logg.warning(f"image PCA: {n_components} components requested, only {q} possible "
                     f"({x.shape[0]} spots x {x.shape[1]} dims)")
    z = StandardScaler().fit_transform(x)
    pca = PCA(n_components=q, random_state=random_state)
    feats = pca.fit_transform(z).astype(np.float32)
    return feats, pca.explained_variance_ratio_.astype(np.float32)


def _alloc(shape: tuple, dtype, tmpdir: str | None):
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes <= IN_MEMORY_BYTES:
        return np.empty(shape, dtype=dtype), None
    fd, path = tempfile.mkstemp(suffix=".npy", dir=tmpdir)
    os.close(fd)
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape), path


def filtered_tiles(adata, image=None, *, library_id: str | None = None, scale: str | float = "auto",
                   size_factor: float = 3.5, patch_px: int | str = "auto", pad: str = "reflect", pad_value: int = 255,
                   diameter: float | None = None, filter: str = "lowpass_box",  # noqa: A002 - the CLI's name
                   out=None, chunk_size: int = 128, progress: bool = True) -> np.ndarray:
    """Cut and filter every spot's patch chunk by chunk (the unfiltered RGB stack is never held whole).

    Returns ``(N, p, p)`` uint8 grey for 'lowpass_box', ``(N, p, p, 3)`` uint8 RGB for 'none'. ``out``: an
    array/memmap of that shape to fill (default: a new array). ``patch_px``: cut tiles at the side the network is
    trained at ('auto': :func:`auto_settings` of this machine); larger tiles cost time and disk and are resized down
    before training anyway.
    ``progress``: a log line every tenth of the patches, the first one with the expected total time.
    """
    from ._byol import auto_settings
    from ._filters import FILTERS, frequency_filter
    from ._tiles import iter_patches

    if filter not in FILTERS:
        raise InputError(f"unknown filter {filter!r}; choose one of {FILTERS}")
    if patch_px == "auto":
        patch_px = auto_settings(None)["input_px"]
    shape = (adata.n_obs, patch_px, patch_px) + ((3,) if filter == "none" else ())
    if out is None:
        out = np.empty(shape, dtype=np.uint8)
    elif tuple(out.shape) != shape:
        raise InputError(f"out has shape {out.shape}; expected {shape}")
    start = logg.info(f"cutting and filtering {adata.n_obs} patches ({size_factor:g} x fiducial diameter -> "
                      f"{patch_px} px, filter {filter})")
    t_cut = t_filter = 0.0
    bar = Progress(adata.n_obs, "tiles", "patch") if progress else None
    done = 0
    t0 = time.perf_counter()
    for idx, patches in iter_patches(adata, image, library_id=library_id, size_factor=size_factor,
                                     patch_px=patch_px, scale=scale, pad=pad, pad_value=pad_value,
                                     diameter=diameter, chunk_size=chunk_size):
        t1 = time.perf_counter()
        t_cut += t1 - t0
        out[idx] = frequency_filter(patches, filter)
        t0 = time.perf_counter()
        t_filter += t0 - t1
        if bar is not None:
            if done == 0 and len(idx) < adata.n_obs:
                logg.info(f"estimate: cutting {adata.n_obs} tiles takes ~{fmt_seconds((t0 - bar.start) * adata.n_obs / len(idx))}"
                          f" (timed on the first {len(idx)})")
            done += len(idx)
            bar.update(done)
    logg.info("finished patches", time=start,
              deep=f"cut {adata.n_obs / max(t_cut, 1e-9):.0f} patches/s, filter {adata.n_obs / max(t_filter, 1e-9):.0f}"
                   " patches/s")
    return out


def _slices(adata, library_id, image) -> list[tuple[np.ndarray, str | None]]:
    """``[(spot indices, library_id)]``: one entry, or one per slice when several slices have libraries."""
    spatial = adata.uns.get(SPATIAL) or {}
    if library_id is None and image is None and len(spatial) > 1 and SLICE_KEY in adata.obs:
        slices = adata.obs[SLICE_KEY].astype(str).to_numpy()
        names = list(dict.fromkeys(slices))
        missing = [s for s in names if s not in spatial]
        if missing:
            raise InputError(f"obs['{SLICE_KEY}'] slices {missing} have no library in uns['{SPATIAL}'] "
                             f"(has {sorted(spatial)}); pass library_id")
        return [(np.flatnonzero(slices == s), s) for s in names]
    return [(np.arange(adata.n_obs), library_id)]


def image_features(
    adata,
    image=None,
    *,
    tiles: np.ndarray | None = None,
    library_id: str | None = None,
    scale: str | float = "auto",
    size_factor: float = 3.5,
    patch_px: int | str = "auto",
    pad: str = "reflect",
    diameter: float | None = None,
    filter: str = "lowpass_box",  # noqa: A002
    backbone: str = "auto",
    weights: str | os.PathLike | None = None,
    epochs: int = 1,
    max_steps: int | str | None = "auto",
    batch_size: int = 32,
    lr: float = 3e-4,
    input_px: int | str = "auto",
    n_components: int = 16,
    recalibrate_bn: bool = True,
    device: str | None = None,
    random_state: int = 0,
    tmpdir: str | None = None,
    key_added: str = IMAGE_FEATURES,
    copy: bool = False,
):
    """Image features per spot: patches, frequency filter, BYOL, StandardScaler + PCA (spec A3).

    Parameters
    ----------
    adata
        One slice (or several, each with its own ``uns['spatial']`` library named as in ``obs['slice']``; BYOL
        and PCA then run per slice, as the reference fits PCA per slice).
    image
        Image file / array, or ``None`` for the images in ``uns['spatial']``; see :func:`extract_patches`.
    tiles
        Pre-computed filtered patches ``(n_obs, p, p[, 3])`` (e.g. from ``spatialdomains image-tiles``); the
        image, scale, size and filter arguments are then unused.
    size_factor, scale, pad, diameter, filter
        Patch extraction and filtering; see :func:`extract_patches` and :func:`frequency_filter`.
    patch_px
        Side the patches are cut at; 'auto': ``input_px`` (the reference cut 512 px and resized to 256).
    backbone, input_px, max_steps
        'auto' chooses by device (:func:`auto_settings`): the reference's resnet50 at 256 px for one epoch on a
        GPU, resnet18 at 64 px for at most 60 steps on a CPU. With ``tiles``, 'auto' ``input_px`` is the tiles'
        side; with a weights file, 'auto' ``backbone`` is the file's architecture.
    weights
        'imagenet' (torchvision's ImageNet weights through its cache; checked, and downloaded when online,
        before any tiling), a state_dict file, or ``None`` (random init; warns: much weaker features).
    epochs, batch_size, lr, device
        BYOL; see :func:`train_byol`.
    n_components
        PCA components (reference: 16 for one slice, 128 multi-slice, paper 64).
    recalibrate_bn
        Before embedding, re-estimate the backbone's BatchNorm statistics on the (non-augmented) tiles; see
        :func:`recalibrate_batchnorm`. Not in the reference; after a short run from random init it is the
        difference between informative and useless features (synthetic slice: ARI ~0.65 vs ~0.03 for 2 of 3
        seeds), and it makes inference statistics match the inference inputs.
    random_state
        Seed of BYOL (PCA uses the reference's fixed 42).
    key_added
        ``obsm`` key.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None`` (or the copy). Writes ``obsm[key_added]`` (float32, ``(n_obs, n_components)``) and
    ``uns['spatialdomains']['image_features']`` (params as resolved, explained variance, BYOL final loss).
    """
    from ._byol import _resolve_device, auto_settings, backbone_of, build_backbone, embed, recalibrate_batchnorm, train_byol
    from ._weights import fetch_imagenet_weights, is_imagenet

    adata = adata.copy() if copy else adata
    if tiles is not None and len(tiles) != adata.n_obs:
        raise InputError(f"tiles hold {len(tiles)} patches but adata has {adata.n_obs} spots")
    dev = _resolve_device(device)
    if tiles is not None and input_px == "auto":
        input_px = int(tiles.shape[1])
    if backbone == "auto" and weights is not None and not is_imagenet(weights):
        backbone = backbone_of(weights) or "auto"  # a staged checkpoint decides the architecture
    settings = auto_settings(dev, backbone=backbone, input_px=input_px, max_steps=max_steps)
    backbone, input_px, max_steps = settings["backbone"], settings["input_px"], settings["max_steps"]
    if patch_px == "auto":
        patch_px = input_px
    # Inputs that can fail are checked before any tiling or training
    if is_imagenet(weights):
        fetch_imagenet_weights(backbone)
    elif weights is not None:
        build_backbone(backbone, weights)
    auto = [k for k in settings["auto"]]
    start = logg.info(f"computing image features ({backbone} at {input_px} px on {dev}"
                      f"{', chosen by device: ' + ', '.join(auto) if auto else ''}; PCA {n_components})")
    feats = np.zeros((adata.n_obs, n_components), dtype=np.float32)
    info: dict = {}
    q_min = n_components
    for idx, lib in _slices(adata, library_id, image):
        tmp_path = None
        if tiles is not None:
            slice_tiles = tiles if len(idx) == adata.n_obs else tiles[idx]
        else:
            sub = adata if len(idx) == adata.n_obs else adata[idx]
            shape = (len(idx), patch_px, patch_px) + ((3,) if filter == "none" else ())
            buf, tmp_path = _alloc(shape, np.uint8, tmpdir)
            slice_tiles = filtered_tiles(sub, image, library_id=lib, scale=scale, size_factor=size_factor,
                                         patch_px=patch_px, pad=pad, diameter=diameter, filter=filter, out=buf)
        try:
            passes = 2 if recalibrate_bn else 1
            model = train_byol(slice_tiles, backbone=backbone, weights=weights, epochs=epochs, max_steps=max_steps,
                               batch_size=batch_size, lr=lr, input_px=input_px, seed=random_state, device=dev,
                               inference_patches=passes * len(slice_tiles))
            if recalibrate_bn:
                recalibrate_batchnorm(model, slice_tiles, batch_size=max(batch_size, 64))
            emb = embed(model, slice_tiles, batch_size=max(batch_size, 64))
        finally:
            if tmp_path is not None:
                del slice_tiles, buf
                Path(tmp_path).unlink(missing_ok=True)
        f, evr = pca_features(emb, n_components)
        q_min = min(q_min, f.shape[1])
        feats[idx, :f.shape[1]] = f
        info[str(lib) if lib is not None else "all"] = {
            "explained_variance_ratio": evr, "byol_final_loss": float(model.history["loss"].iloc[-1]),
            "byol_steps": len(model.history), "embedding_dim": int(emb.shape[1]),
            "byol_seconds": float(model.history["seconds"].sum())}
    adata.obsm[key_added] = feats[:, :q_min] if q_min < n_components else feats
    params = {
        "key_added": key_added, "tiles": tiles is not None,
        "image": str(image) if tiles is None and isinstance(image, (str, os.PathLike)) else None,
        "library_id": library_id, "scale": scale, "size_factor": size_factor, "patch_px": patch_px, "pad": pad,
        "diameter": diameter, "filter": filter, "backbone": backbone,
        "weights": str(weights) if weights is not None else "random_init", "epochs": epochs,
        "max_steps": max_steps, "batch_size": batch_size, "lr": lr, "input_px": input_px,
        "device": str(dev), "chosen_by_device": auto, "n_components": int(q_min),
        "recalibrate_bn": recalibrate_bn,
        "pca_random_state": 42, "random_state": random_state, "per_slice": info,
    }
    if tiles is not None:
        for k in ("scale", "size_factor", "patch_px", "pad", "diameter", "filter"):
            params.pop(k)
    record(adata, "image_features" if key_added == IMAGE_FEATURES else f"image_features_{key_added}", params)
    logg.info("finished image features", time=start,
              deep=f"added obsm['{key_added}'] (float32, {adata.obsm[key_added].shape[1]} dims), "
                   "uns['spatialdomains']['image_features']")
    return adata if copy else None
