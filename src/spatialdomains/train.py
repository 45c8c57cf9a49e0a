"""One training loop for every method: device choice, seeding, progress, NaN guard, checkpoints.

A method supplies a model, an optimiser and a ``step(epoch) -> dict[str, Tensor]`` closure that
builds its augmented views and returns its loss terms (``"loss"`` is the one optimised). The loop
owns everything else, so methods never re-implement it.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from . import _logging as logg
from ._utils import InputError, atomic_path, seed_everything

__all__ = ["resolve_device", "TrainingDiverged", "TrainOptions", "run_training", "seed_everything"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def resolve_device(device: str | None = "auto"):
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    import torch

    threads = os.environ.get("SPATIALDOMAINS_TORCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device 'cuda' was requested but no CUDA GPU is visible to torch")
    if device not in ("cpu",) and not str(device).startswith("cuda"):
        raise InputError(f"unknown device {device!r}; use auto, cpu or cuda[:N]")
    return torch.device(device)


@dataclass
class TrainOptions:
    epochs: int
    checkpoint: Path | None = None  #: where to save model + optimiser state
    checkpoint_every: int = 0  #: epochs between checkpoints (0 = only at the end)
    resume: bool = False  #: continue from ``checkpoint`` if it exists
    progress: bool = True  #: tqdm bar on stderr
    log_every: int = 50  #: epochs between log lines


def run_training(
    model,
    optimizer,
    step: Callable[[int], dict],
    options: TrainOptions,
    *,
    name: str = "model",
) -> pd.DataFrame:
    """Optimise ``model`` for ``options.epochs`` epochs; return the loss history (one row per epoch).

    Raises :class:`TrainingDiverged` naming the epoch and the loss terms when the loss is NaN/inf.
    """
    import torch

    history: list[dict] = []
    first_epoch = 0
    if options.resume and options.checkpoint and Path(options.checkpoint).exists():
        state = torch.load(options.checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = state.get("history", [])
        first_epoch = int(state["epoch"]) + 1
        torch.set_rng_state(state["torch_rng"])
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
        optimizer.zero_grad(set_to_none=True)
        terms = step(epoch)
        loss = terms["loss"]
        value = float(loss.detach())
        if not math.isfinite(value):
            parts = ", ".join(f"{k}={float(v.detach() if hasattr(v, 'detach') else v):.4g}" for k, v in terms.items())
            raise TrainingDiverged(f"{name}: loss is {value} at epoch {epoch} ({parts}); "
                                   "lower the learning rate or check the input for NaN/constant features")
        loss.backward()
        optimizer.step()
        row = {"epoch": epoch, **{k: float(v.detach()) if hasattr(v, "detach") else float(v) for k, v in terms.items()}, "seconds": time.perf_counter() - t0}
        history.append(row)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        if options.log_every and (epoch + 1) % options.log_every == 0:
            logg.debug(f"{name} epoch {epoch + 1}/{options.epochs} loss {value:.5f}")
        if options.checkpoint and options.checkpoint_every and (epoch + 1) % options.checkpoint_every == 0:
            save_checkpoint(options.checkpoint, model, optimizer, epoch, history)
    if bar is not None:
        bar.close()
    if options.checkpoint:
        save_checkpoint(options.checkpoint, model, optimizer, options.epochs - 1, history)
    model.eval()
    logg.info(f"trained {name} for {options.epochs - first_epoch} epochs", time=start)
    return pd.DataFrame(history)


def save_checkpoint(path: Path, model, optimizer, epoch: int, history: list[dict]) -> None:
    import torch

    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
             "history": history, "torch_rng": torch.get_rng_state()}
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)
