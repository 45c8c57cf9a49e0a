"""Helpers for training tests: the device they train on, a job killed right after its n-th checkpoint."""

from __future__ import annotations

import os


class Killed(Exception):
    """Raised in place of the job's death."""


def kill_after_checkpoints(monkeypatch, n: int) -> list[int]:
    """Make the next training run die right after writing its ``n``-th checkpoint.

    Returns the list that receives the epoch of every checkpoint written; the original
    ``save_checkpoint`` is put back when the run dies.
    """
    import spatialdomains.train as T

    save = T.save_checkpoint
    saved: list[int] = []

    def save_then_die(path, model, optimizer, epoch, *args, **kwargs):
        save(path, model, optimizer, epoch, *args, **kwargs)
        saved.append(epoch)
        if len(saved) == n:
            monkeypatch.setattr(T, "save_checkpoint", save)
            raise Killed

    monkeypatch.setattr(T, "save_checkpoint", save_then_die)
    return saved


#: Device the training tests run on: ``cpu`` here and in CI; ``benchmarks/gpu_check.sh`` sets
#: ``SPATIALDOMAINS_TEST_DEVICE=cuda`` on a GPU machine so that the same assertions cover the CUDA paths.
DEVICE = os.environ.get("SPATIALDOMAINS_TEST_DEVICE", "cpu")
