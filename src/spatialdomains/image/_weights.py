"""``weights="imagenet"``: torchvision's ImageNet ResNet weights through torchvision's weights API and cache.

torchvision keeps downloaded checkpoints in ``$TORCH_HOME/hub/checkpoints/<file>`` (``TORCH_HOME`` defaults to
``~/.cache/torch``) and loads them from there without the network once they are present. We use the weights the
reference used (``pretrained=True``, i.e. ``IMAGENET1K_V1``: ``resnet50-0676ba61.pth`` for ResNet-50).
:func:`fetch_imagenet_weights` is the pre-flight check every entry point runs before any tiling or training:
it downloads the checkpoint when the network allows, and otherwise fails in one line naming the file to stage.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from .. import _logging as logg
from .._utils import InputError

__all__ = ["IMAGENET", "is_imagenet", "imagenet_weights", "imagenet_checkpoint", "fetch_imagenet_weights"]

#: The value of ``weights``/``--weights``/``--byol_weights`` that asks for torchvision's ImageNet weights.
IMAGENET = "imagenet"
#: Seconds without an answer before a download attempt counts as offline (a firewall may drop packets silently).
CONNECT_TIMEOUT_S = 30


def is_imagenet(weights) -> bool:
    return isinstance(weights, str) and weights.strip().lower() == IMAGENET


def imagenet_weights(backbone: str):
    """torchvision's weights enum member for ``backbone`` (``IMAGENET1K_V1``, as the reference's ``pretrained=True``)."""
    import torchvision

    return torchvision.models.get_model_weights(backbone).IMAGENET1K_V1


def imagenet_checkpoint(backbone: str) -> Path:
    """Where torchvision looks for (and caches) the checkpoint: ``$TORCH_HOME/hub/checkpoints/<file of the URL>``."""
    import torch

    url = imagenet_weights(backbone).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def fetch_imagenet_weights(backbone: str) -> Path:
    """Make sure the ImageNet checkpoint of ``backbone`` is in torchvision's cache; return its path.

    Downloads it through torchvision (``weights.get_state_dict``, which verifies the file's hash) when it is
    missing. Raises :class:`InputError` in one line naming the file to stage when that is impossible (offline,
    blocked, cache not writable) -- callers run this before any compute.
    """
    weights = imagenet_weights(backbone)
    path = imagenet_checkpoint(backbone)
    if path.is_file():
        return path
    start = logg.info(f"downloading torchvision's ImageNet weights for {backbone} ({weights.url}) to {path}")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(CONNECT_TIMEOUT_S)
    try:
        weights.get_state_dict(progress=False, check_hash=True)
    except Exception as err:  # noqa: BLE001 - URLError, OSError, hash mismatch: all mean "stage it yourself"
        reason = str(err).splitlines()[0] if str(err) else ""
        raise InputError(
            f"--weights imagenet: torchvision's ImageNet weights for {backbone} are not cached and could not be "
            f"downloaded ({type(err).__name__}: {reason}); stage {weights.url} as {path} (TORCH_HOME="
            f"{os.environ.get('TORCH_HOME', '~/.cache/torch')}) or pass the file's path instead "
            f"(--weights /path/to/{path.name})") from err
    finally:
        socket.setdefaulttimeout(previous)
    logg.info("finished download", time=start)
    return path
