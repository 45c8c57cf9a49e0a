"""``image-tiles`` and ``image-features``: the IMAGE_TILES and IMAGE_FEATURES pipeline processes."""

from __future__ import annotations

from pathlib import Path

import click

from ._base import input_option, main, output_option, threads_option

_SCALES = ["auto", "fullres", "hires", "lowres"]
_BACKBONES = ["auto", "resnet18", "resnet34", "resnet50", "resnet101"]


class AutoInt(click.ParamType):
    """``auto`` or an integer >= ``min``."""

    name = "auto|INTEGER"

    def __init__(self, min: int = 1):  # noqa: A002 - click's name
        self.min = min

    def convert(self, value, param, ctx):
        if isinstance(value, int) or str(value).strip().lower() != "auto":
            try:
                number = int(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is neither 'auto' nor an integer", param, ctx)
            if number < self.min:
                self.fail(f"{number} is below {self.min}", param, ctx)
            return number
        return "auto"


def weights_option(f):
    return click.option(
        "--weights", default=None, metavar="imagenet|FILE",
        help="Initial backbone weights: 'imagenet' (torchvision's ImageNet checkpoint, from $TORCH_HOME/hub/checkpoints "
             "or downloaded; offline and not staged: fails before any work, naming the file to stage) or a "
             "state_dict file (e.g. torchvision's resnet50-0676ba61.pth). Default: random init (weaker features).")(f)


def tiles_sidecar(path: Path) -> Path:
    """The JSON of parameters written beside a tile stack: ``tiles.npy`` -> ``tiles.json``."""
    return Path(path).with_suffix(".json")


def _obs_digest(obs_names) -> str:
    import hashlib

    h = hashlib.sha1()
    for name in obs_names:
        h.update(str(name).encode())
        h.update(b"\0")
    return h.hexdigest()


@main.command("image-tiles")
@input_option("Slice .h5ad with obsm['spatial'] (and uns['spatial'] scalefactors/images).")
@click.option("--image", "image", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Histology image (TIFF/PNG/JPEG). Default: the best image in uns['spatial'].")
@output_option("Tile stack (.npy, uint8, written atomically); a .json of parameters is written beside it.")
@click.option("--library-id", default=None, help="Library in uns['spatial'] (when there are several).")
@click.option("--scale", type=click.Choice(_SCALES), default="auto", show_default=True,
              help="Resolution of the image: auto = fullres for --image, else the best in uns['spatial'].")
@click.option("--size-factor", type=click.FloatRange(min=0, min_open=True), default=3.5, show_default=True,
              help="Patch side in fiducial diameters.")
@click.option("--patch-px", type=AutoInt(min=8), default="auto", show_default=True,
              help="Tile side in pixels; auto = the network input side for --device (256 on a GPU, 64 on a CPU).")
@click.option("--backbone", type=click.Choice(_BACKBONES), default="auto", show_default=True,
              help="Backbone image-features will train (auto: by --device); recorded in the .json for it.")
@click.option("--device", default="auto", show_default=True,
              help="Device image-features will train on (auto: this machine's); chooses the auto sizes.")
@weights_option
@click.option("--diameter", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Fiducial diameter in full-res pixels (default: scalefactors' fiducial_diameter_fullres).")
@click.option("--pad", type=click.Choice(["reflect", "constant"]), default="reflect", show_default=True,
              help="Border handling for patches crossing the image edge (constant = white).")
@click.option("--filter", "filter_", type=click.Choice(["lowpass_box", "none"]), default="lowpass_box",
              show_default=True, help="lowpass_box: the reference's grey + blur + FFT low-pass box filter.")
@threads_option
def image_tiles(input_path: Path, image: Path | None, output: Path, library_id: str | None, scale: str,
                size_factor: float, patch_px, backbone: str, device: str, weights: str | None, diameter: float | None,
                pad: str, filter_: str) -> None:
    """Cut one patch per spot at the size the network trains at, filter it, write the stack as .npy (+ .json).

    The image step is planned here (backbone and size for the training device, --weights checked) so that a
    bad setting fails before any tile is cut; image-features follows the plan in the .json.
    """
    import anndata as ad
    import numpy as np

    from .. import _logging as logg
    from .._utils import atomic_path, package_version, write_json_atomic
    from ..image import auto_settings, build_backbone, filtered_tiles

    plan = auto_settings(device, backbone=backbone, input_px=patch_px)
    if weights is not None:  # before any tile is cut: ImageNet cached or downloadable, or a file that fits
        build_backbone(plan["backbone"], weights)
    patch_px = plan["input_px"]
    adata = ad.read_h5ad(input_path)
    if plan["auto"]:
        logg.info(f"tiles for a {plan['device_kind']} run: {plan['backbone']} at {patch_px} px (chosen by device: "
                  f"{', '.join(plan['auto'])})")
    shape = (adata.n_obs, patch_px, patch_px) + ((3,) if filter_ == "none" else ())
    with atomic_path(output, suffix=".npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        filtered_tiles(adata, image, library_id=library_id, scale=scale, size_factor=size_factor,
                       patch_px=patch_px, pad=pad, diameter=diameter, filter=filter_, out=out)
        out.flush()
        del out
    write_json_atomic(tiles_sidecar(output), {
        "input": str(input_path), "image": str(image) if image else None, "library_id": library_id,
        "scale": scale, "size_factor": size_factor, "patch_px": patch_px, "diameter": diameter, "pad": pad,
        "filter": filter_, "shape": list(shape), "n_obs": adata.n_obs, "obs_names_sha1": _obs_digest(adata.obs_names),
        "backbone": plan["backbone"], "device_kind": plan["device_kind"], "chosen_by_device": plan["auto"],
        "version": package_version(),
    })
    logg.info(f"wrote {output} {shape} and {tiles_sidecar(output)}")


@main.command("image-features")
@input_option("Slice .h5ad (the same spots, in the same order, as the tiles).")
@click.option("--tiles", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Tile stack from image-tiles (.npy).")
@output_option("Output .h5ad with obsm['X_image'] (written atomically).")
@click.option("--backbone", type=click.Choice(_BACKBONES), default="auto", show_default=True,
              help="torchvision ResNet trained with BYOL; auto = the architecture of a --weights file, else the one "
                   "image-tiles planned (its .json), else resnet50 on a GPU, resnet18 on a CPU.")
@weights_option
@click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True, help="BYOL epochs.")
@click.option("--max-steps", type=AutoInt(min=1), default="auto", show_default=True,
              help="Cap on BYOL steps; auto = none on a GPU, 60 on a CPU.")
@click.option("--batch-size", type=click.IntRange(min=2), default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=3e-4, show_default=True)
@click.option("--input-px", type=AutoInt(min=16), default="auto", show_default=True,
              help="Network input side (tiles are resized to it); auto = the tiles' side.")
@click.option("--n-components", type=click.IntRange(min=1), default=16, show_default=True,
              help="PCA components of the image features.")
@click.option("--recalibrate-bn/--no-recalibrate-bn", default=True, show_default=True,
              help="Re-estimate BatchNorm statistics on the tiles before embedding.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--seed", type=int, default=0, show_default=True)
@threads_option
def image_features_cmd(input_path: Path, tiles: Path, output: Path, backbone: str, weights: str | None, epochs: int,
                       max_steps, batch_size: int, lr: float, input_px, n_components: int, recalibrate_bn: bool,
                       device: str, seed: int) -> None:
    """Train BYOL on the tiles, embed them, PCA -> obsm['X_image'] of the slice."""
    import json

    import anndata as ad
    import numpy as np

    from .. import _logging as logg
    from .._utils import InputError, write_h5ad_atomic
    from ..image import backbone_of, device_kind, image_features, is_imagenet

    sidecar = tiles_sidecar(tiles)
    meta = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    if backbone == "auto" and weights is not None and not is_imagenet(weights):
        backbone = backbone_of(weights) or "auto"  # a staged checkpoint decides the architecture
    if backbone == "auto" and meta.get("backbone"):
        backbone = meta["backbone"]
        if meta.get("device_kind") and meta["device_kind"] != device_kind(device):
            logg.warning(f"tiles {tiles} were planned for a {meta['device_kind']} run ({backbone} at "
                         f"{meta.get('patch_px')} px) but this run is on {device_kind(device)}; keeping that plan "
                         "(set --backbone/--input-px, or image-tiles --device, to change it)")
    adata = ad.read_h5ad(input_path)
    try:
        stack = np.load(tiles, mmap_mode="r")
    except Exception as err:  # noqa: BLE001
        raise InputError(f"could not read tile stack {tiles}: {err}") from err
    if stack.ndim not in (3, 4) or stack.dtype != np.uint8:
        raise InputError(f"tile stack {tiles} has shape {stack.shape} and dtype {stack.dtype}; expected uint8 "
                         "(N, p, p[, 3]) from image-tiles")
    if len(stack) != adata.n_obs:
        raise InputError(f"tile stack {tiles} holds {len(stack)} tiles but {input_path} has {adata.n_obs} spots")
    if meta.get("obs_names_sha1") not in (None, _obs_digest(adata.obs_names)):
        raise InputError(f"tile stack {tiles} was made for other spots (or another order) than {input_path} "
                         f"(obs_names differ; see {sidecar})")
    # image_features checks --weights (ImageNet cached or downloadable, or a file that fits) before training
    image_features(adata, tiles=stack, backbone=backbone, weights=weights, epochs=epochs, max_steps=max_steps,
                   batch_size=batch_size, lr=lr, input_px=input_px, n_components=n_components,
                   recalibrate_bn=recalibrate_bn, device=device, random_state=seed)
    write_h5ad_atomic(adata, output)
    logg.info(f"wrote {output}")
