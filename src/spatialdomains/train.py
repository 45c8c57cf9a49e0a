"""One training loop for every method: seeding, progress, NaN guard, checkpoints that resume exactly.

A method supplies a model, an optimiser and a ``step(epoch, batch) -> dict[str, Tensor]`` callable
that builds its augmented views for one optimiser step and returns its loss terms (``"loss"`` is the
one optimised). When ``step`` has ``state_dict()`` / ``load_state_dict()`` (a mini-batch generator,
an estimate made during training), that state travels in the checkpoint too. The loop owns
everything else, so methods never re-implement it. Device, precision and memory probing are in
:mod:`spatialdomains._device` and re-exported here.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from . import _logging as logg
from ._device import memory_budget, native_bf16, peak_gpu_mb, peak_rss_mb, reset_peak_memory, resolve_device, \
    resolve_precision
from ._utils import atomic_path, seed_everything

__all__ = ["resolve_device", "resolve_precision", "native_bf16", "memory_budget", "peak_rss_mb", "peak_gpu_mb",
           "reset_peak_memory", "TrainingDiverged", "TrainOptions", "run_training", "seed_everything",
           "save_checkpoint", "rng_state", "set_rng_state"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainOptions:
    """How to run the loop (not what to learn: that is the method's config).

    ``epochs`` counts passes over the data; a mini-batch method makes several optimiser steps per
    epoch (``steps_per_epoch`` of :func:`run_training`).
    """

    epochs: int
    checkpoint: Path | None = None  #: where to save model, optimiser, RNG and step state
    checkpoint_every: int = 0  #: epochs between checkpoints (0 = only at the end)
    resume: bool = False  #: continue from ``checkpoint`` if it exists
    progress: bool = True  #: tqdm bar on stderr
    log_every: int = 50  #: epochs between log lines
    deterministic: bool = False  #: torch deterministic algorithms (bitwise repeatable, slower on GPU)


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and (when present) every CUDA generator's state."""
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (missing entries are left alone)."""
    import torch

    if "python" in state:
        random.setstate(state["python"])
    if "numpy" in state:
        np.random.set_state(state["numpy"])
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _mean_terms(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def run_training(
    model,
    optimizer,
    step: Callable[[int, int], dict],
    options: TrainOptions,
    *,
    steps_per_epoch: int = 1,
    name: str = "model",
) -> pd.DataFrame:
    """Optimise ``model`` for ``options.epochs`` epochs of ``steps_per_epoch`` steps each.

    Returns the loss history, one row per epoch: ``epoch``, every loss term (mean over the epoch's
    steps) and ``seconds``. Checkpoints are written at epoch ends; resuming restores the model, the
    optimiser, every random generator and ``step``'s own state, so a resumed run equals an
    uninterrupted one (bitwise under ``options.deterministic``).

    Raises :class:`TrainingDiverged` naming the epoch and the loss terms when the loss is NaN/inf.
    """
    history: list[dict] = []
    first_epoch = 0
    if options.resume and options.checkpoint and Path(options.checkpoint).exists():
        first_epoch, history = load_checkpoint(options.checkpoint, model, optimizer, step)
        logg.info(f"resumed {name} from {options.checkpoint} at epoch {first_epoch}")
    bar = None
    if options.progress and first_epoch < options.epochs:
        from tqdm.auto import tqdm

        bar = tqdm(total=options.epochs, initial=first_epoch, desc=f"training {name}", leave=False,
                   mininterval=1.0, disable=None)
    start = time.perf_counter()
    model.train()
    for epoch in range(first_epoch, options.epochs):
        t0 = time.perf_counter()
        rows = []
        for batch in range(steps_per_epoch):
            optimizer.zero_grad(set_to_none=True)
            terms = step(epoch, batch)
            loss = terms["loss"]
            value = float(loss.detach())
            if not math.isfinite(value):
                where = f"epoch {epoch}" + (f" (step {batch + 1}/{steps_per_epoch})" if steps_per_epoch > 1 else "")
                parts = ", ".join(f"{k}={float(v.detach() if hasattr(v, 'detach') else v):.4g}"
                                  for k, v in terms.items())
                raise TrainingDiverged(f"{name}: loss is {value} at {where} ({parts}); "
                                       "lower the learning rate or check the input for NaN/constant features")
            loss.backward()
            optimizer.step()
            rows.append({k: float(v.detach()) if hasattr(v, "detach") else float(v) for k, v in terms.items()})
        history.append({"epoch": epoch, **_mean_terms(rows), "seconds": time.perf_counter() - t0})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{history[-1]['loss']:.4f}", refresh=False)
        if options.log_every and (epoch + 1) % options.log_every == 0:
            logg.debug(f"{name} epoch {epoch + 1}/{options.epochs} loss {history[-1]['loss']:.5f}")
        if options.checkpoint and options.checkpoint_every and (epoch + 1) % options.checkpoint_every == 0:
            save_checkpoint(options.checkpoint, model, optimizer, epoch, history, step)
    if bar is not None:
        bar.close()
    if options.checkpoint:
        save_checkpoint(options.checkpoint, model, optimizer, options.epochs - 1, history, step)
    model.eval()
    logg.info(f"trained {name} for {options.epochs - first_epoch} epochs", time=start)
    return pd.DataFrame(history)


def save_checkpoint(path: Path, model, optimizer, epoch: int, history: list[dict], step=None) -> None:
    """Write everything a resumed run needs after ``epoch`` (atomically)."""
    import torch

    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
             "history": history, "rng": rng_state()}
    if hasattr(step, "state_dict"):
        state["step"] = step.state_dict()
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, model, optimizer, step=None) -> tuple[int, list[dict]]:
    """Restore a :func:`save_checkpoint` file; return the next epoch and the history so far."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if "rng" in state:
        set_rng_state(state["rng"])
    elif "torch_rng" in state:  # checkpoints of 0.1.0 kept only torch's CPU generator
        torch.set_rng_state(state["torch_rng"])
    if "step" in state and hasattr(step, "load_state_dict"):
        step.load_state_dict(state["step"])
    return int(state["epoch"]) + 1, list(state.get("history", []))
