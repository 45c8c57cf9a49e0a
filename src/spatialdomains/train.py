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
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from . import _logging as logg
from ._device import memory_budget, native_bf16, peak_gpu_mb, peak_rss_mb, reset_peak_memory, resolve_device, \
    resolve_precision
from ._utils import InputError, atomic_path, seed_everything

__all__ = ["resolve_device", "resolve_precision", "native_bf16", "memory_budget", "peak_rss_mb", "peak_gpu_mb",
           "reset_peak_memory", "TrainingDiverged", "TrainOptions", "run_training", "seed_everything",
           "save_checkpoint", "rng_state", "set_rng_state", "BATCH_MODES", "MINIBATCH_ABOVE", "BatchingConfig",
           "choose_batch_mode", "minibatch_threshold", "gcn_memory"]

BATCH_MODES = ("auto", "full", "minibatch")

#: ``minibatch_above`` by device type when not set. On a 2-core CPU STAIG's full batch is quadratic per
#: epoch: 400 epochs take 6 min at 10k spots (300 genes), ~25 min at 20k and hours at 50k, while the fixed
#: budget of 1000 mini-batch steps takes ~4 min at any N but scored 0.08 ARI lower at 10k (one seed,
#: benchmarks/results/minibatch_10k.md): full batch is kept while it costs at most ~6x the budget.
#: A GPU runs full batch at 50k spots in seconds per epoch.
MINIBATCH_ABOVE = {"cpu": 20_000, "cuda": 50_000}


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


@dataclass(frozen=True)
class BatchingConfig:
    """How a GCN method batches its training; the same fields in every method's config (``-p`` keys).

    ``batch_mode="auto"`` trains full batch while ``N <= minibatch_above`` and the full-batch memory
    estimate fits the budget, else on mini-batches (``minibatch_above=None``: 20,000 spots on a CPU,
    50,000 on a GPU; see :data:`MINIBATCH_ABOVE`): ``batch_size`` spatially compact seed spots with
    their k-hop halo per step, for ``max_steps`` optimiser steps whatever N is (fewer only when the
    epochs give fewer: ``min(max_steps, epochs x ceil(N / batch_size))``), then every spot is embedded
    in one O(N) pass. The budget is ``max_memory_gb``, else ``$SPATIALDOMAINS_MAX_MEMORY`` (the
    pipeline's ``task.memory``), else probed (:func:`memory_budget`).
    """

    batch_mode: str = "auto"  #: auto | full | minibatch
    minibatch_above: int | None = None  #: auto: mini-batches above this many spots (None: by device)
    batch_size: int = 4096  #: seed spots per mini-batch
    max_steps: int = 1000  #: optimiser steps in mini-batch mode (independent of N)
    max_memory_gb: float | None = None  #: memory budget; None: $SPATIALDOMAINS_MAX_MEMORY, else probed
    #: deprecated (Spotscape 0.1): budget of auto's full-batch choice only; use ``max_memory_gb``
    memory_budget_gb: float | None = None

    def __post_init__(self):
        name = type(self).__name__
        if self.batch_mode not in BATCH_MODES:
            raise InputError(f"{name}: batch_mode must be auto, full or minibatch, got {self.batch_mode!r}")
        if min(self.batch_size, self.max_steps) < 1 or (self.minibatch_above or 0) < 0:
            raise InputError(f"{name}: batch_size and max_steps must be >= 1 and minibatch_above >= 0, got "
                             f"{self.batch_size}, {self.max_steps}, {self.minibatch_above}")
        for key in ("max_memory_gb", "memory_budget_gb"):
            if getattr(self, key) is not None and not getattr(self, key) > 0:
                raise InputError(f"{name}: {key} must be > 0 GB or None, got {getattr(self, key)!r}")
        if self.memory_budget_gb is not None:
            warnings.warn(f"{name}(memory_budget_gb=...) is deprecated and will be removed in 0.3.0; use "
                          "max_memory_gb (which also stops a mini-batch run that does not fit)", FutureWarning,
                          stacklevel=3)

    def training_steps(self, mode: str, epochs: int, steps_per_epoch: int) -> int:
        """Optimiser steps of a run: ``epochs`` full batch; the fixed budget in mini-batch mode."""
        return int(epochs) if mode == "full" else min(int(self.max_steps), int(epochs) * int(steps_per_epoch))


def minibatch_threshold(config: BatchingConfig, device) -> int:
    """``config.minibatch_above``, or the device's default (:data:`MINIBATCH_ABOVE`) when it is None."""
    if config.minibatch_above is not None:
        return int(config.minibatch_above)
    kind = getattr(device, "type", str(device).split(":")[0])
    return MINIBATCH_ABOVE.get(kind, MINIBATCH_ABOVE["cpu"])


def choose_batch_mode(config: BatchingConfig, n_spots: int, device, full_bytes: float,
                      minibatch_bytes: Callable[[], float], *, name: str) -> tuple[str, float, float]:
    """The batch mode of a run, its memory estimate and the budget (bytes), logged before training.

    ``minibatch_bytes`` is called only when mini-batches are considered. Raises :class:`InputError`
    naming the parameters to change when the chosen mode's estimate exceeds the budget.
    """
    budget = memory_budget(device, config.max_memory_gb)
    # the deprecated key keeps its 0.1 meaning: it only decides auto's choice
    choice = budget if config.memory_budget_gb is None else config.memory_budget_gb * 1e9
    mode = config.batch_mode
    above = minibatch_threshold(config, device)
    if mode == "auto":
        mode = "full" if n_spots <= above and full_bytes <= choice else "minibatch"
    est = full_bytes if mode == "full" else minibatch_bytes()
    why = (f"N={n_spots} > minibatch_above={above}" if n_spots > above
           else f"full-batch estimate {full_bytes / 1e9:.2f} GB")
    logg.info(f"{name}: {mode} batch, memory estimate {est / 1e9:.2f} GB vs budget {budget / 1e9:.2f} GB"
              + (f" (batch_mode=auto: {why})" if config.batch_mode == "auto" else "")
              + (f", batch_size={config.batch_size}, max_steps={config.max_steps}" if mode == "minibatch" else ""))
    if est > budget:
        if mode == "full":
            raise InputError(
                f"{name}: batch_mode=full needs an estimated {est / 1e9:.2f} GB but the memory budget is "
                f"{budget / 1e9:.2f} GB; set batch_mode=auto or batch_mode=minibatch (with a smaller "
                f"batch_size if needed), or raise max_memory_gb (or the task's memory)")
        raise InputError(
            f"{name}: mini-batch training (batch_size={config.batch_size}) needs an estimated {est / 1e9:.2f} GB "
            f"but the memory budget is {budget / 1e9:.2f} GB; lower batch_size, or raise max_memory_gb (or "
            f"the task's memory); batch_mode=full would need {full_bytes / 1e9:.2f} GB")
    return mode, est, budget


def gcn_memory(n_rows: int, n_edges: int | None = None, *, n_features: int, widths: list[int], n_views: int = 2,
               density: float = 1.0, sparse: bool = False, bytes_per_value: int = 4, values_per_row: int = 0,
               fixed: float = 0.0) -> dict[str, float]:
    """Rough bytes to train a GCN on ``n_rows`` nodes at once: X (dense, or CSR with its transpose), per
    view ~3 tensors of every layer width with gradients, per-view normalised edges, the first layer's
    weight with gradient and two Adam moments, plus the method's own ``values_per_row`` per node (its
    loss terms) and ``fixed`` bytes (e.g. a loss's tiles)."""
    n, b = float(n_rows), bytes_per_value
    edges = float(n_edges if n_edges is not None else 8 * n_rows)
    x = 2 * density * n * n_features * (b + 8) if sparse else n * n_features * b
    acts = n_views * 2 * 3 * n * sum(widths) * b + n * values_per_row * b + fixed
    graph = n_views * edges * (16 + b)
    params = 4 * n_features * widths[0] * b
    return {"x": x, "activations": acts, "graph": graph, "parameters": params, "total": x + acts + graph + params}


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
    max_steps: int | None = None,
    name: str = "model",
) -> pd.DataFrame:
    """Optimise ``model`` for ``options.epochs`` epochs of ``steps_per_epoch`` steps each, or for
    ``max_steps`` optimiser steps in all when that is fewer (the last epoch may then be partial).

    Returns the loss history, one row per epoch: ``epoch``, every loss term (mean over the epoch's
    steps) and ``seconds``. Checkpoints are written at epoch ends; resuming restores the model, the
    optimiser, every random generator and ``step``'s own state, so a resumed run equals an
    uninterrupted one (bitwise under ``options.deterministic``).

    Raises :class:`TrainingDiverged` naming the epoch and the loss terms when the loss is NaN/inf.
    """
    history: list[dict] = []
    first_epoch = 0
    total = options.epochs * steps_per_epoch if max_steps is None else min(max_steps, options.epochs * steps_per_epoch)
    last_epoch = math.ceil(total / max(steps_per_epoch, 1))
    if options.resume and options.checkpoint and Path(options.checkpoint).exists():
        first_epoch, history = load_checkpoint(options.checkpoint, model, optimizer, step)
        logg.info(f"resumed {name} from {options.checkpoint} at epoch {first_epoch}")
    bar = None
    # Batch jobs (Nextflow, SLURM) have no terminal, where tqdm stays silent: log about every tenth
    # of the run with the time left instead, so a long run shows that it moves.
    log_every_epochs = 0
    if options.progress and first_epoch < last_epoch and not sys.stderr.isatty():
        log_every_epochs = max(1, (last_epoch - first_epoch) // 10)
    if options.progress and first_epoch < last_epoch:
        from tqdm.auto import tqdm

        bar = tqdm(total=last_epoch, initial=first_epoch, desc=f"training {name}", leave=False,
                   mininterval=1.0, disable=None)
    start = time.perf_counter()
    model.train()
    for epoch in range(first_epoch, last_epoch):
        t0 = time.perf_counter()
        rows = []
        for batch in range(min(steps_per_epoch, total - epoch * steps_per_epoch)):
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
        if log_every_epochs and (epoch + 1 - first_epoch) % log_every_epochs == 0 and epoch + 1 < last_epoch:
            done = epoch + 1 - first_epoch
            elapsed = time.perf_counter() - start
            left = elapsed / done * (last_epoch - epoch - 1)
            logg.info(f"training {name}: epoch {epoch + 1}/{last_epoch}, loss {history[-1]['loss']:.4f}, "
                      f"{elapsed:.0f} s so far, about {left:.0f} s left")
        if options.log_every and (epoch + 1) % options.log_every == 0:
            logg.debug(f"{name} epoch {epoch + 1}/{last_epoch} loss {history[-1]['loss']:.5f}")
        if options.checkpoint and options.checkpoint_every and (epoch + 1) % options.checkpoint_every == 0:
            save_checkpoint(options.checkpoint, model, optimizer, epoch, history, step)
    if bar is not None:
        bar.close()
    if options.checkpoint:
        save_checkpoint(options.checkpoint, model, optimizer, last_epoch - 1, history, step)
    model.eval()
    logg.info(f"trained {name} for {last_epoch - first_epoch} epochs ({total} steps in all)", time=start)
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
