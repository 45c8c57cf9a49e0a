"""BYOL self-supervised training of a torchvision ResNet on spot patches (spec A3.3), written from the paper.

BYOL (Grill et al. 2020): an online network (encoder -> projector -> predictor) learns to predict the
projection that a slowly moving target network (encoder -> projector, an exponential moving average of the
online weights) gives for another augmented view of the same patch. Loss per patch:
``2 - 2 cos(q_online(v1), z_target(v2)) + 2 - 2 cos(q_online(v2), z_target(v1))``, averaged over the batch.
Defaults follow the package the reference used (projector/predictor 4096 hidden + BN + ReLU -> 256, EMA 0.99).

Differences from the reference, on purpose:

- **Per-image augmentation parameters.** The reference augments the whole batch tensor, so every image in a
  batch gets the same flip, rotation, crop and colour change; here each image draws its own.
- **Same normalisation at training and inference.** The reference ImageNet-normalises only inside the
  training augmentation and embeds raw [0, 1] inputs; here both see resize to ``input_px`` + ImageNet mean/std.
- **float32** (the reference runs in float64), batched inference (the reference embeds one image at a time).
- Rotation fills the corners by reflection (the reference fills them black); flips, rotation and the random
  resized crop are fused into one bilinear warp (flips commute with the isotropic blur, so the order is
  equivalent to the reference's jitter, grey, flips, blur, rotation, crop).
- Before embedding, ``image_features`` re-estimates the BatchNorm running statistics on the non-augmented
  patches (:func:`recalibrate_batchnorm`); after a short run they are otherwise a stale average of a few
  augmented batches, which made features from random init unreliable (seed-dependent ARI 0.03-0.64 on a
  synthetic slice, 0.54-0.74 with recalibration).
- Initial weights: ``"imagenet"`` (torchvision's ImageNet checkpoint through its weights API and cache,
  downloaded once when online; see :mod:`._weights`) or a file the user passes (e.g. torchvision's
  ``resnet50-0676ba61.pth``). Without either the backbone starts from random weights, with a warning.
- Backbone, input size and number of steps default by device (:func:`auto_settings`): the reference's ResNet-50 at
  256 px for one epoch on a GPU; a ResNet-18 at 64 px for at most 60 steps on a CPU, where the reference's setting
  takes over an hour per Visium slice.
"""

from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import _logging as logg
from .._utils import InputError, seed_everything
from ._progress import Progress, fmt_seconds
from ._weights import fetch_imagenet_weights, imagenet_weights, is_imagenet

__all__ = ["BYOL", "BACKBONES", "AUTO_SETTINGS", "auto_settings", "backbone_of", "build_backbone",
           "load_backbone_weights", "byol_loss", "augment", "train_byol", "embed", "patches_to_tensor",
           "IMAGENET_MEAN", "IMAGENET_STD"]

#: torchvision ResNets and the width of their pooled representation.
BACKBONES = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The reference's augmentation settings (spec A3.3).
JITTER = (0.8, 0.8, 0.8, 0.2)  # brightness, contrast, saturation, hue
P_JITTER, P_GREY, P_BLUR = 0.3, 0.2, 0.2
BLUR_SIGMA = (1.0, 2.0)
CROP_SCALE, CROP_RATIO = (0.08, 1.0), (3 / 4, 4 / 3)

RANDOM_INIT_WARNING = (
    "no backbone weights given: {backbone} starts from random initialisation. Features of a randomly "
    "initialised network trained briefly ({steps} BYOL steps) carry much less texture information than "
    "ImageNet-initialised ones, which the reference uses; pass weights='imagenet' (--weights imagenet, "
    "--byol_weights imagenet) or a staged torchvision checkpoint for image features comparable to the reference.")

#: What ``"auto"`` means per kind of device. GPU: the reference's ResNet-50 at 256 px, one epoch. CPU: a ResNet-18
#: at 64 px for at most 60 steps of 32 patches -- on a DLPFC slice (3.6k spots, 2 cores) the reference's setting
#: ran for over an hour, this one in minutes (docs/methods.md, "Image features on a CPU"). 64 px lose nothing the
#: reference's filter keeps: its low-pass box passes at most 18 cycles per patch, below the 32 a 64 px grid holds.
AUTO_SETTINGS = {
    "cuda": {"backbone": "resnet50", "input_px": 256, "max_steps": None},
    "cpu": {"backbone": "resnet18", "input_px": 64, "max_steps": 60},
}
#: Training steps timed before the estimate of the whole image step is logged (the first one carries start-up costs).
WARMUP_STEPS = 2


def device_kind(device) -> str:
    """``"cuda"`` or ``"cpu"``: the device a run will train on (``"auto"``/``None``: CUDA when torch sees one).

    Only classifies: a ``cuda`` request on a machine without a GPU is still ``"cuda"`` (the tile step plans for
    the training task, which may run elsewhere)."""
    if device is None or str(device) == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if str(device).startswith("cuda") else "cpu"


def auto_settings(device=None, *, backbone: str = "auto", input_px: int | str = "auto",
                  max_steps: int | str | None = "auto") -> dict:
    """Resolve ``"auto"`` backbone, network input side and BYOL step cap for ``device`` (see :data:`AUTO_SETTINGS`).

    Returns ``{"backbone", "input_px", "max_steps", "device_kind", "auto": [names that were "auto"]}``; explicit
    values pass through (validated).
    """
    kind = device_kind(device)
    chosen = AUTO_SETTINGS[kind]
    out: dict = {"device_kind": kind, "auto": []}
    for name, value in (("backbone", backbone), ("input_px", input_px), ("max_steps", max_steps)):
        if isinstance(value, str) and value == "auto":
            value = chosen[name]
            out["auto"].append(name)
        out[name] = value
    if out["backbone"] not in BACKBONES:
        raise InputError(f"unknown backbone {out['backbone']!r}; choose one of auto, {', '.join(BACKBONES)}")
    try:
        out["input_px"] = int(out["input_px"])
        out["max_steps"] = None if out["max_steps"] is None else int(out["max_steps"])
    except (TypeError, ValueError):
        raise InputError(f"input_px and max_steps must be integers or 'auto' (got {input_px!r}, {max_steps!r})") from None
    if out["input_px"] < 16 or (out["max_steps"] is not None and out["max_steps"] < 1):
        raise InputError(f"input_px must be >= 16 and max_steps >= 1 (got {out['input_px']}, {out['max_steps']})")
    return out


# --- backbone --------------------------------------------------------------------------------------
def build_backbone(name: str = "resnet50", weights: str | os.PathLike | None = None):
    """A torchvision ResNet with ``fc`` replaced by identity: ``(B, 3, H, W) -> (B, D)`` pooled features.

    ``weights``: ``"imagenet"`` (torchvision's ImageNet checkpoint, from its cache or downloaded; see
    :func:`fetch_imagenet_weights`), a state_dict file (torchvision checkpoint or a saved ``state_dict``), or
    ``None`` = random init.
    """
    import torchvision

    if name not in BACKBONES:
        raise InputError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    if is_imagenet(weights):
        path = fetch_imagenet_weights(name)
        model = getattr(torchvision.models, name)(weights=imagenet_weights(name), progress=False)
        logg.info(f"loaded torchvision's ImageNet weights for {name} from {path}")
    else:
        model = getattr(torchvision.models, name)(weights=None)
    model.fc = nn.Identity()
    if weights is not None and not is_imagenet(weights):
        load_backbone_weights(model, weights, name=name)
    return model


def _unwrap_state_dict(obj) -> dict:
    for _ in range(3):
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        if isinstance(obj, dict):
            inner = next((obj[k] for k in ("state_dict", "model", "online_encoder", "backbone") if k in obj), None)
            if inner is None:
                break
            obj = inner
        elif hasattr(obj, "state_dict"):
            obj = obj.state_dict()
        else:
            break
    raise ValueError("no tensor state_dict found")


def _read_state_dict(path: Path) -> dict:
    """The tensors of a weights file, without a 'module.' prefix and the classification head ('fc.*')."""
    if not path.is_file():
        raise InputError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        state = _unwrap_state_dict(obj)
    except Exception as err:  # noqa: BLE001
        raise InputError(f"could not read weights file {path} as a torch state_dict: {type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}") from err
    state = {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def backbone_of(path: str | os.PathLike) -> str | None:
    """The torchvision ResNet whose tensors a weights file holds (names and shapes), or ``None``.

    Lets ``backbone="auto"`` follow a staged checkpoint (``resnet50-0676ba61.pth`` -> resnet50 on any device)."""
    import torchvision

    def shapes(state: dict) -> dict:
        return {k: tuple(v.shape) for k, v in state.items()
                if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}

    held = shapes(_read_state_dict(Path(path)))
    for name in BACKBONES:
        with torch.device("meta"):  # shapes only, nothing allocated
            if shapes(getattr(torchvision.models, name)(weights=None).state_dict()) == held:
                return name
    return None


def load_backbone_weights(model, path: str | os.PathLike, *, name: str = "backbone") -> None:
    """Load a state_dict file into ``model`` after checking that its keys and shapes fit.

    Accepts a plain state_dict or one nested under 'state_dict'/'model'; strips a 'module.' prefix and ignores
    the classification head ('fc.*'). Raises :class:`InputError` naming the file otherwise.
    """
    path = Path(path)
    state = _read_state_dict(path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or mismatched or len(unexpected) > len(state) // 2:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of {len(expected)} tensors missing (e.g. {missing[:3]})")
        if mismatched:
            k = mismatched[0]
            parts.append(f"{len(mismatched)} with other shapes (e.g. {k}: file {tuple(state[k].shape)} vs model "
                         f"{tuple(expected[k].shape)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        raise InputError(f"weights file {path} does not fit a torchvision {name}: " + "; ".join(parts)
                         + f". Pass a state_dict of the same architecture (e.g. torchvision's ImageNet checkpoint "
                           f"for {name}).")
    if unexpected:
        logg.warning(f"weights file {path}: ignoring {len(unexpected)} keys not in {name} (e.g. {unexpected[:3]})")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    logg.info(f"loaded {name} weights from {path}")


# --- BYOL ----------------------------------------------------------------------------------------------
def _mlp(dim_in: int, hidden: int, dim_out: int):
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, dim_out))


class BYOL(nn.Module):
    r"""BYOL around a backbone (Grill et al., 2020, https://arxiv.org/abs/2006.07733).

    Args:
        backbone: encoder ``(B, 3, H, W) -> (B, dim)``.
        dim: width of the backbone's representation.
        projection_dim: projector/predictor output (256).
        hidden_dim: projector/predictor hidden width (4096).
        ema_decay: target update ``xi <- decay * xi + (1 - decay) * theta`` (0.99).

    Shapes:
        ``forward``: ``(B, 3, H, W)`` normalised images -> ``(B, dim)`` online representation.
    """

    def __init__(self, backbone, dim: int, *, projection_dim: int = 256, hidden_dim: int = 4096,
                 ema_decay: float = 0.99):
        super().__init__()
        if not 0.0 <= ema_decay <= 1.0:
            raise ValueError(f"BYOL: ema_decay must be in [0, 1], not {ema_decay}")
        self.dim, self.projection_dim, self.hidden_dim, self.ema_decay = dim, projection_dim, hidden_dim, ema_decay
        self.online_encoder = backbone
        self.online_projector = _mlp(dim, hidden_dim, projection_dim)
        self.predictor = _mlp(projection_dim, hidden_dim, projection_dim)
        self.target_encoder = copy.deepcopy(backbone)
        self.target_projector = copy.deepcopy(self.online_projector)
        self.input_px: int | None = None  #: side the model was trained at (set by ``train_byol``)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise the heads and copy the online network into the target (the backbone keeps its
        weights, which may be pretrained)."""
        for m in list(self.online_projector) + list(self.predictor):
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        self.target_encoder.load_state_dict(self.online_encoder.state_dict())
        self.target_projector.load_state_dict(self.online_projector.state_dict())
        for p in list(self.target_encoder.parameters()) + list(self.target_projector.parameters()):
            p.requires_grad_(False)

    def forward(self, x):
        return self.online_encoder(x)

    def views(self, v1, v2):
        """Online predictions and target projections of both views: ``(q1, q2, z1, z2)``."""
        q = self.predictor(self.online_projector(self.online_encoder(torch.cat([v1, v2]))))
        with torch.no_grad():
            z = self.target_projector(self.target_encoder(torch.cat([v1, v2])))
        q1, q2 = q.chunk(2)
        z1, z2 = z.chunk(2)
        return q1, q2, z1.detach(), z2.detach()

    @torch.no_grad()
    def update_target(self) -> None:
        """EMA of the online encoder + projector parameters into the target network."""
        d = self.ema_decay
        for online, target in ((self.online_encoder, self.target_encoder),
                               (self.online_projector, self.target_projector)):
            for po, pt in zip(online.parameters(), target.parameters()):
                pt.mul_(d).add_(po.detach(), alpha=1.0 - d)

    def __repr__(self) -> str:
        return f"BYOL({type(self.online_encoder).__name__}, {self.dim} -> {self.projection_dim})"


def byol_loss(q1, q2, z1, z2):
    """Symmetric BYOL loss: mean over the batch of ``(2 - 2 cos(q1, z2)) + (2 - 2 cos(q2, z1))``."""
    def one(q, z):
        return 2.0 - 2.0 * (F.normalize(q, dim=-1) * F.normalize(z, dim=-1)).sum(dim=-1)

    return (one(q1, z2) + one(q2, z1)).mean()


# --- input pipeline ------------------------------------------------------------------------------------
def patches_to_tensor(patches: np.ndarray, input_px: int, device):
    """uint8 patches ``(B, p, p[, C])`` -> float ``(B, 3, input_px, input_px)`` in [0, 1] (grey replicated)."""
    x = np.asarray(patches)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise InputError(f"patches have shape {patches.shape}; expected (N, p, p), (N, p, p, 1) or (N, p, p, 3)")
    x = np.ascontiguousarray(x)
    if not x.flags.writeable:  # e.g. a slice of a read-only memmap
        x = x.copy()
    t = torch.from_numpy(x).to(device).permute(0, 3, 1, 2).float()
    if x.dtype == np.uint8:
        t = t / 255.0
    if t.shape[1] == 1:
        t = t.expand(-1, 3, -1, -1)
    if t.shape[-1] != input_px or t.shape[-2] != input_px:
        t = F.interpolate(t, size=(input_px, input_px), mode="bilinear", align_corners=False,
                          antialias=t.shape[-1] > input_px)
    return t.clamp(0.0, 1.0).contiguous()


def _normalise(x):
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def _uniform(gen, n, lo, hi):
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _luma(x):
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def _shift_hue(x, shift):
    """Rotate the HSV hue of each image of ``x`` (``(B, 3, H, W)`` in [0, 1]) by ``shift`` (``(B,)``, turns)."""
    r, g, b = x.unbind(1)
    v, _ = x.max(dim=1)
    lo, _ = x.min(dim=1)
    chroma = v - lo
    grey = chroma <= 0
    safe_c = torch.where(grey, torch.ones_like(chroma), chroma)
    sat = torch.where(grey, torch.zeros_like(v), chroma / torch.where(v > 0, v, torch.ones_like(v)))
    # hue in sixths of a turn, from whichever channel is the maximum
    h = torch.where(v == r, (g - b) / safe_c,
                    torch.where(v == g, 2.0 + (b - r) / safe_c, 4.0 + (r - g) / safe_c))
    h = torch.where(grey, torch.zeros_like(h), h)
    h = torch.remainder(h / 6.0 + shift.view(-1, 1, 1), 1.0) * 6.0
    sector = torch.floor(h).clamp(0, 5)
    f = h - sector
    p, q, t = v * (1 - sat), v * (1 - sat * f), v * (1 - sat * (1 - f))
    table = ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))  # (R, G, B) per sector
    out = torch.zeros_like(x)
    for k, (cr, cg, cb) in enumerate(table):
        m = (sector == k).unsqueeze(1)
        out = torch.where(m, torch.stack((cr, cg, cb), dim=1), out)
    return out.clamp(0.0, 1.0)


def _colour_jitter(x, gen):
    """Per image, with p=0.3: brightness, contrast, saturation and hue changes in a random order."""
    n = len(x)
    b, c, s, h = JITTER
    sel = (torch.rand(n, generator=gen) < P_JITTER).view(-1, 1, 1, 1).to(x.device)
    factors = [_uniform(gen, n, 1 - b, 1 + b), _uniform(gen, n, 1 - c, 1 + c), _uniform(gen, n, 1 - s, 1 + s),
               _uniform(gen, n, -h, h)]
    factors = [f.to(x.device, x.dtype) for f in factors]
    order = torch.argsort(torch.rand(n, 4, generator=gen), dim=1)
    chosen = torch.nonzero(sel.flatten().cpu()).flatten()
    if len(chosen) == 0:
        return x
    y = x[chosen.to(x.device)]
    for pos in range(4):
        for op in range(4):
            rows = torch.nonzero(order[chosen, pos] == op).flatten()
            if len(rows) == 0:
                continue
            ids = chosen[rows].to(x.device)
            rows = rows.to(x.device)
            img = y[rows]
            f = factors[op][ids].view(-1, 1, 1, 1)
            if op == 0:
                img = img * f
            elif op == 1:
                mean = _luma(img).mean(dim=(2, 3), keepdim=True)
                img = (img - mean) * f + mean
            elif op == 2:
                grey = _luma(img)
                img = (img - grey) * f + grey
            else:
                img = _shift_hue(img, factors[3][ids])
            y[rows] = img.clamp(0.0, 1.0)
    x = x.clone()
    x[chosen.to(x.device)] = y
    return x


def _grey(x, gen):
    sel = (torch.rand(len(x), generator=gen) < P_GREY).to(x.device)
    grey = _luma(x).expand_as(x)
    return torch.where(sel.view(-1, 1, 1, 1), grey, x)


def _blur(x, gen):
    n = len(x)
    sel = (torch.rand(n, generator=gen) < P_BLUR).to(x.device)
    sigma = _uniform(gen, n, *BLUR_SIGMA).to(x.device, x.dtype)
    r = torch.tensor([-1.0, 0.0, 1.0], device=x.device, dtype=x.dtype)
    k1 = torch.exp(-(r.view(1, 3) ** 2) / (2 * sigma.view(n, 1) ** 2))
    k1 = k1 / k1.sum(dim=1, keepdim=True)
    k2 = (k1.view(n, 3, 1) * k1.view(n, 1, 3)).repeat_interleave(3, dim=0).unsqueeze(1)  # (3n, 1, 3, 3)
    blurred = F.conv2d(F.pad(x.reshape(1, 3 * n, *x.shape[-2:]), (1, 1, 1, 1), mode="reflect"), k2, groups=3 * n)
    return torch.where(sel.view(-1, 1, 1, 1), blurred.view_as(x), x)


def _geometry(x, gen):
    """Per image: horizontal and vertical flip (p=0.5 each), rotation U[0, 360), random resized crop."""
    n = len(x)
    flip_x = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    flip_y = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    angle = _uniform(gen, n, 0.0, 2 * math.pi)
    # random resized crop: area fraction and aspect ratio as torchvision (10 tries, then the largest fit)
    w = torch.ones(n)
    h = torch.ones(n)
    todo = torch.ones(n, dtype=torch.bool)
    for _ in range(10):
        area = _uniform(gen, n, *CROP_SCALE)
        ratio = torch.exp(_uniform(gen, n, math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
        cw, ch = torch.sqrt(area * ratio), torch.sqrt(area / ratio)
        ok = todo & (cw <= 1) & (ch <= 1)
        w, h = torch.where(ok, cw, w), torch.where(ok, ch, h)
        todo &= ~ok
    cx = _uniform(gen, n, -1.0, 1.0) * (1 - w)
    cy = _uniform(gen, n, -1.0, 1.0) * (1 - h)
    # output (u, v) -> crop in the rotated image -> un-rotate -> un-flip; all in normalised coordinates
    cos, sin = torch.cos(angle), torch.sin(angle)
    crop = torch.zeros(n, 3, 3)
    crop[:, 0, 0], crop[:, 0, 2], crop[:, 1, 1], crop[:, 1, 2], crop[:, 2, 2] = w, cx, h, cy, 1.0
    rot_inv = torch.zeros(n, 3, 3)
    rot_inv[:, 0, 0], rot_inv[:, 0, 1], rot_inv[:, 1, 0], rot_inv[:, 1, 1] = cos, sin, -sin, cos
    rot_inv[:, 2, 2] = 1.0
    flip = torch.zeros(n, 3, 3)
    flip[:, 0, 0], flip[:, 1, 1], flip[:, 2, 2] = flip_x, flip_y, 1.0
    theta = (flip @ rot_inv @ crop)[:, :2, :].to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def augment(x, generator):
    """One random BYOL view per image of ``x`` (``(B, 3, H, W)`` in [0, 1]), ImageNet-normalised.

    Spec A3.3's pipeline with **per-image** random parameters: colour jitter (0.8, 0.8, 0.8, 0.2) p=0.3,
    greyscale p=0.2, 3x3 Gaussian blur sigma U[1, 2] p=0.2, horizontal and vertical flips, rotation U[0, 360),
    random resized crop (scale 0.08-1, ratio 3/4-4/3) back to ``H x W``, ImageNet mean/std. ``generator`` is a
    CPU ``torch.Generator`` (parameters are drawn on the CPU, so results do not depend on the device).
    """
    x = _colour_jitter(x.clone(), generator)
    x = _grey(x, generator)
    x = _blur(x, generator)
    x = _geometry(x, generator)
    return _normalise(x)


# --- training and inference ----------------------------------------------------------------------------
def _resolve_device(device):
    from ..train import resolve_device

    return resolve_device("auto" if device is None else str(device))


def train_byol(patches: np.ndarray, *, backbone: str = "auto", weights: str | os.PathLike | None = None,
               epochs: int = 1, batch_size: int = 32, lr: float = 3e-4, input_px: int | str = "auto", seed: int = 0,
               device: str | None = None, projection_dim: int = 256, hidden_dim: int = 4096,
               ema_decay: float = 0.99, max_steps: int | str | None = "auto", progress: bool = True,
               inference_patches: int = 0):
    """Train BYOL on ``patches`` and return the model (its ``online_encoder`` gives the features).

    Parameters
    ----------
    patches
        ``(N, p, p)`` grey or ``(N, p, p, 3)`` RGB uint8 patches (a memmap is read batch by batch).
    backbone
        'auto' (by device, :func:`auto_settings`: resnet50 on a GPU, resnet18 on a CPU), 'resnet50' (reference,
        2048-d), 'resnet18' (512-d), 'resnet34', 'resnet101'.
    weights
        'imagenet' (torchvision's ImageNet checkpoint through its cache; downloaded when online), a state_dict
        file to start from (e.g. a staged ``resnet50-0676ba61.pth``), or ``None``: random init, with a warning
        (much weaker features).
    epochs
        Passes over the patches (reference notebook: 1), capped by ``max_steps``.
    batch_size, lr
        Adam mini-batches (reference: 43 / 3e-4); a last batch of one patch is skipped (BatchNorm needs 2).
    input_px
        Network input side: patches are resized to it before augmentation. 'auto': 256 (the reference) on a GPU,
        64 on a CPU.
    seed
        Seeds initialisation, shuffling and augmentation.
    device
        'auto'/None (CUDA when present), 'cpu', 'cuda[:N]'.
    max_steps
        Stop after this many optimiser steps; 'auto': no cap on a GPU, 60 on a CPU; ``None``: no cap.
    progress
        Log a progress line every tenth of the steps, and after :data:`WARMUP_STEPS` timed steps one line with
        the expected time of the rest (training plus ``inference_patches`` patches of inference afterwards).

    Returns
    -------
    The ``BYOL`` module (eval mode) with ``history`` (DataFrame: step, epoch, loss, seconds), ``input_px`` and
    ``settings`` (the resolved backbone, input_px, max_steps, device).
    """
    from ..train import TrainOptions, run_training

    n = len(patches)
    if n < 2:
        raise InputError(f"BYOL needs at least 2 patches, got {n}")
    if epochs < 1 or batch_size < 2 or (isinstance(max_steps, int) and max_steps < 1):
        raise InputError(f"epochs and max_steps must be >= 1 and batch_size >= 2 (got {epochs}, {max_steps}, "
                         f"{batch_size})")
    dev = _resolve_device(device)
    settings = auto_settings(dev, backbone=backbone, input_px=input_px, max_steps=max_steps)
    backbone, input_px, max_steps = settings["backbone"], settings["input_px"], settings["max_steps"]
    seed_everything(seed)
    net = build_backbone(backbone, weights)
    model = BYOL(net, BACKBONES[backbone], projection_dim=projection_dim, hidden_dim=hidden_dim,
                 ema_decay=ema_decay).to(dev, torch.float32)
    model.input_px = int(input_px)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)

    bs = min(batch_size, n)
    per_epoch = n // bs + (1 if n % bs >= 2 else 0)
    total = epochs * per_epoch if max_steps is None else min(int(max_steps), epochs * per_epoch)
    if weights is None:
        logg.warning(RANDOM_INIT_WARNING.format(backbone=backbone, steps=total))
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(int(seed))
    order: dict[int, np.ndarray] = {}
    meta: list[int] = []
    bar = Progress(total, "BYOL", "step") if progress else None
    starts: list[float] = []

    def step(k: int, _batch: int = 0) -> dict:  # one optimiser step per run_training 'epoch'
        starts.append(time.perf_counter())
        if bar is not None:
            bar.update(k)
            if k == WARMUP_STEPS and total > WARMUP_STEPS:
                _log_estimate(model, patches, k, starts, total, inference_patches, dev)
        if k > 0:
            model.update_target()  # EMA after the previous optimiser step
        epoch, b = divmod(k, per_epoch)
        if epoch not in order:
            order.clear()
            order[epoch] = rng.permutation(n)
        idx = np.sort(order[epoch][b * bs:(b + 1) * bs])  # sorted: contiguous reads from a memmap
        x = patches_to_tensor(patches[idx], model.input_px, dev)
        v1, v2 = augment(x, gen), augment(x, gen)
        meta.append(epoch)
        return {"loss": byol_loss(*model.views(v1, v2))}

    capped = f", capped at {max_steps} steps" if max_steps is not None and max_steps < epochs * per_epoch else ""
    start = logg.info(f"training BYOL ({backbone}, {n} patches, {epochs} epoch(s){capped}, {total} steps, batch {bs}, "
                      f"{input_px} px) on {dev}")
    history = run_training(model, opt, step, TrainOptions(epochs=total, progress=False, log_every=0), name="BYOL")
    if bar is not None:
        bar.update(total)
    model.update_target()
    model.eval()
    history = history.rename(columns={"epoch": "step"})
    history["epoch"] = meta[:len(history)]
    model.history = history
    model.settings = {**settings, "device": str(dev), "steps": total, "batch_size": bs}
    rate = total * bs * 2 / max(1e-9, float(history["seconds"].sum())) if total else float("nan")
    logg.info("finished BYOL", time=start, deep=f"{rate:.1f} views/s, final loss "
              f"{float(history['loss'].iloc[-1]) if len(history) else float('nan'):.4f}")
    return model


def _log_estimate(model, patches, done: int, starts: list[float], total: int, inference_patches: int, dev) -> None:
    """One line: the expected time of the rest of the image step, from the timed steps and one inference batch."""
    per_step = starts[-1] - starts[-2]  # the last complete step (the first one carries start-up costs)
    per_patch = 0.0
    if inference_patches:
        batch = patches[:min(len(patches), 64)]
        t0 = time.perf_counter()
        embed(model, batch, batch_size=len(batch), device=dev, progress=False)
        per_patch = (time.perf_counter() - t0) / len(batch)
    rest = (total - done) * per_step + inference_patches * per_patch
    infer = (f", then {inference_patches} patches of inference at {1 / max(per_patch, 1e-9):.0f}/s"
             if inference_patches else "")
    logg.info(f"estimate: image features need ~{fmt_seconds(rest)} more on {dev} ({total - done} BYOL steps at "
              f"{per_step:.2f} s{infer}; timed on the first {done} steps)")


def recalibrate_batchnorm(model, patches: np.ndarray, batch_size: int = 64, *, input_px: int | None = None,
                          device: str | None = None, progress: bool = True) -> None:
    """Re-estimate the encoder's BatchNorm running statistics on ``patches`` (inference preprocessing).

    After a short BYOL run the running statistics are a stale moving average of a few augmented batches
    (or the init values 0/1); one no-grad pass in train mode with a cumulative average makes inference use
    the statistics of the real, non-augmented inputs. Only buffers change, never weights.
    """
    encoder = getattr(model, "online_encoder", model)
    input_px = int(input_px or getattr(model, "input_px", None) or 256)
    dev = _resolve_device(device) if device is not None else next(encoder.parameters()).device
    bns = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or len(patches) < 2:
        return
    saved = [m.momentum for m in bns]
    was_training = encoder.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the pass
    encoder.train()
    bar = Progress(len(patches), "BatchNorm statistics", "patch") if progress else None
    with torch.no_grad():
        for s in range(0, len(patches), batch_size):
            chunk = patches[s:s + batch_size]
            if len(chunk) < 2:
                break
            encoder(_normalise(patches_to_tensor(chunk, input_px, dev)))
            if bar is not None:
                bar.update(s + len(chunk))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    encoder.train(was_training)


def embed(model, patches: np.ndarray, batch_size: int = 64, *, input_px: int | None = None,
          device: str | None = None, progress: bool = True) -> np.ndarray:
    """Online-encoder representations ``(N, D)`` float32 of ``patches``, in batches.

    Inputs get exactly the training preprocessing minus augmentation: resize to the model's ``input_px`` and
    ImageNet normalisation. ``model`` is a :func:`train_byol` result or any backbone ``(B, 3, H, W) -> (B, D)``.
    """
    encoder = getattr(model, "online_encoder", model)
    input_px = int(input_px or getattr(model, "input_px", None) or 256)
    dev = _resolve_device(device) if device is not None else next(encoder.parameters()).device
    encoder = encoder.to(dev)
    was_training = encoder.training
    encoder.eval()
    chunks = []
    bar = Progress(len(patches), "embedding", "patch") if progress else None
    with torch.no_grad():
        for s in range(0, len(patches), batch_size):
            x = _normalise(patches_to_tensor(patches[s:s + batch_size], input_px, dev))
            chunks.append(encoder(x).float().flatten(1).cpu().numpy())
            if bar is not None:
                bar.update(s + len(x))
    encoder.train(was_training)
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)
