from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .. import _logging as logg
from .._compat import renamed_kwarg
from .._constants import IMAGE_FEATURES, SLICE_KEY, embedding_key
from .._utils import InputError, record


def parse_overrides(config_class: type, overrides: dict[str, Any] | None) -> Any:
    """Build ``config_class`` from its defaults plus ``overrides`` (strings are converted to the field type).

    Keys renamed since the previous release (``config_class.legacy_key(key, value)`` gives the current
    name, ``"field[i]"`` for one element of a pair) are accepted with a deprecation warning. Unknown keys
    raise an ``InputError`` listing the valid ones.
    """
    overrides = dict(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    legacy = getattr(config_class, "legacy_key", None)
    elements: dict[str, dict[int, Any]] = {}
    for key in list(overrides):
        new = legacy(key, overrides[key]) if legacy is not None else None
        if new is None or new == key:
            continue
        value = overrides.pop(key)
        message = (f"{config_class.__name__} parameter {key!r} is deprecated and will be removed in 0.3.0; "
                   f"use {new.split('[')[0]!r}" + (f" (element {new[-2]} of the pair)" if "[" in new else ""))
        logg.warning(message)
        warnings.warn(message, FutureWarning, stacklevel=2)
        if "[" in new:
            elements.setdefault(new.split("[")[0], {})[int(new[-2])] = value
        elif new in overrides:
            raise InputError(f"parameter {key!r} (deprecated) and {new!r} were both given; keep {new!r}")
        else:
            overrides[new] = value
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise InputError(f"unknown {config_class.__name__} parameter(s) {unknown}; valid: {', '.join(sorted(fields))}")
    defaults = config_class()
    values = {}
    for key, value in overrides.items():
        values[key] = _coerce(key, value, getattr(defaults, key))
    for key, parts in elements.items():  # e.g. p_e1=0.2 -> edge_drop=(0.2, <given or default>[1])
        pair = list(values.get(key, getattr(defaults, key)))
        for index, value in parts.items():
            pair[index] = _coerce(key, value, pair[index])
        values[key] = type(getattr(defaults, key))(pair)
    return dataclasses.replace(defaults, **values)


def _coerce(key: str, value: Any, current: Any) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() in ("none", "null"):
        return None
    try:
        if isinstance(current, bool):
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError(text)
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, (tuple, list)):
            parts = [p for p in text.replace(";", ",").split(",") if p]
            conv = type(current[0]) if current else float
            return type(current)(conv(p) for p in parts)
        if current is None:
            for conv in (int, float):
                try:
                    return conv(text)
                except ValueError:
                    pass
    except ValueError:
        raise InputError(f"parameter {key}: cannot read {value!r} as {type(current).__name__}") from None
    return text


#: Methods that read ``obsm['X_image']``; ``image_mode`` decides whether they see it.
IMAGE_METHODS = ("staig",)


def train(adata, method: str, *, copy: bool = False, **kwargs):
    """Train ``method`` on a prepared group and store its embedding (scanpy style).

    Parameters
    ----------
    adata
        Prepared group (see :func:`spatialdomains.pp.prepare_group`).
    method
        A name from :data:`spatialdomains.models.METHODS`.
    **kwargs
        ``random_state``, ``device``, ``n_domains``, ``image_mode``, checkpoint options, and overrides of the method's
        config dataclass (e.g. ``epochs=200``); see :func:`fit_method`.

    Returns
    -------
    ``None`` (or the trained copy with ``copy=True``). Writes ``obsm['X_<method>']`` (float32),
    ``uns['spatialdomains']['train_<method>']`` (config, device, timings, loss history) and, for methods
    that impute, ``layers['<method>_imputed']``.
    """
    adata = adata.copy() if copy else adata
    fit_method(adata, method, **kwargs)
    return adata if copy else None


@renamed_kwarg("seed", "random_state")
def fit_method(
    adata,
    method: str,
    *,
    random_state: int = 0,
    device: str | None = "auto",
    n_domains: int | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    deterministic: bool = False,
    progress: bool = True,
    key_added: str | None = None,
    image_mode: str = "auto",
    **config,
):
    """Train ``method`` on ``adata`` in place, write its slots (see :func:`train`) and return the FitResult.

    ``image_mode`` ('auto', 'on', 'off'), for methods that read ``obsm['X_image']`` (STAIG): 'auto' trains with
    the image features only if every slice's image carries its domains
    (:func:`spatialdomains.image.decide_image_mode`, recorded in ``uns['spatialdomains']['image_mode']``).

    ``random_state`` seeds Python, NumPy and torch (inside the method's fit, once); ``deterministic``
    turns on torch's deterministic algorithms; ``checkpoint``/``checkpoint_every``/``resume`` save and
    restore everything a resumed run needs (it then equals an uninterrupted run).
    """
    from ..models import get_method
    from ..train import TrainOptions

    spec = get_method(method)
    cfg = parse_overrides(spec.config_class, config)
    if adata.n_obs < 3:
        raise InputError(f"need at least 3 spots to train {method}, got {adata.n_obs}")
    if not np.isfinite(np.asarray(adata.X[: min(adata.n_obs, 100000)].sum(1))).all():
        raise InputError("X holds NaN/inf values: run spatialdomains prepare on raw counts")
    options = TrainOptions(epochs=int(getattr(cfg, "epochs")), checkpoint=Path(checkpoint) if checkpoint else None,
                           checkpoint_every=checkpoint_every, resume=resume, progress=progress,
                           deterministic=deterministic)
    start = logg.info(f"training {method} on {adata.n_obs} spots x {adata.n_vars} features "
                      f"({adata.obs[SLICE_KEY].nunique() if SLICE_KEY in adata.obs else 1} slice(s)), seed {random_state}")
    hidden = None
    if method in IMAGE_METHODS:
        from ..image import decide_image_mode

        if not decide_image_mode(adata, image_mode)["use_image"] and IMAGE_FEATURES in adata.obsm:
            hidden = adata.obsm.pop(IMAGE_FEATURES)  # the model sees no image; the features stay in the output
    t0 = time.perf_counter()
    try:
        result = spec.fit(adata, config=cfg, device=device, random_state=random_state, n_domains=n_domains,
                          train_options=options)
    finally:
        if hidden is not None:
            adata.obsm[IMAGE_FEATURES] = hidden
    seconds = time.perf_counter() - t0
    key = key_added or embedding_key(method)
    adata.obsm[key] = np.asarray(result.embedding, dtype=np.float32)
    for name, value in result.extras.items():
        if name == "imputed":
            adata.layers[f"{method}_imputed"] = np.asarray(value, dtype=np.float32)
    adata.uns.setdefault("spatialdomains", {})
    record(adata, f"train_{method}", {
        "config": dataclasses.asdict(cfg), "seed": random_state, "n_domains": n_domains, "train_seconds": seconds,
        **{k: v for k, v in result.info.items()},
    })
    adata.uns["spatialdomains"][f"train_{method}"]["history"] = {
        c: result.history[c].to_numpy() for c in result.history.columns}
    logg.info(f"    finished training {method}", time=start, deep=f"added obsm['{key}']")
    return result


def staig(adata, **kwargs):
    """Train STAIG (image-aided graph contrastive learning); see :func:`train`. Writes ``obsm['X_staig']``."""
    return train(adata, "staig", **kwargs)


def spotscape(adata, **kwargs):
    """Train Spotscape (Similarity Telescope); see :func:`train`. Writes ``obsm['X_spotscape']``."""
    return train(adata, "spotscape", **kwargs)
