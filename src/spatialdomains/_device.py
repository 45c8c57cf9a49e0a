"""What the machine offers a training run: device, native bfloat16, free memory, peak memory.

Probing lives here, on the trainer side, so that methods only ask ("which device?", "is bfloat16
native?", "how much memory may a full batch take?") and never read ``/proc`` or CUDA themselves.
"""

from __future__ import annotations

import os

from ._utils import InputError

__all__ = ["MEMORY_ENV", "resolve_device", "native_bf16", "resolve_precision", "memory_budget", "peak_rss_mb",
           "reset_peak_memory", "peak_gpu_mb"]

PRECISIONS = ("auto", "float32", "bfloat16")


def resolve_device(device: str | None = "auto"):
    """``auto``/``None`` -> CUDA when present, else CPU; ``cuda`` without a GPU is an error.

    ``SPATIALDOMAINS_TORCH_THREADS`` (set by the pipeline from ``task.cpus``) caps torch's threads.
    """
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


def native_bf16(device) -> bool:
    """Whether ``device`` multiplies bfloat16 natively (CUDA with bf16; x86 with avx512_bf16 or amx_bf16)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:  # Linux; elsewhere (macOS, Windows) stay in float32
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device) -> str:
    """``auto`` -> bfloat16 where :func:`native_bf16`, else float32; explicit values are checked and kept."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be auto, float32 or bfloat16, got {precision!r}")
    if precision == "auto":
        return "bfloat16" if native_bf16(device) else "float32"
    return precision


#: environment variable with the task's memory in GB (the pipeline sets it from ``task.memory``)
MEMORY_ENV = "SPATIALDOMAINS_MAX_MEMORY"


def memory_budget(device, budget_gb: float | None = None) -> float:
    """Bytes a training run may use: ``budget_gb`` when given; on a CPU, else 80 % of
    ``$SPATIALDOMAINS_MAX_MEMORY`` GB (the task's memory: the rest is left to Python, AnnData and the
    allocator); else 80 % of free GPU memory or 60 % of available RAM (8 GB when psutil is missing).

    The task's memory limits host RAM, not a GPU's memory, so on CUDA the free GPU memory decides.
    """
    import torch

    if budget_gb is not None:
        return budget_gb * 1e9
    env = os.environ.get(MEMORY_ENV, "").strip()
    if env and device.type != "cuda":
        try:
            return 0.8 * float(env) * 1e9
        except ValueError:
            raise InputError(f"{MEMORY_ENV}={env!r} is not a number of GB") from None
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return 0.8 * free
    try:
        import psutil

        return 0.6 * psutil.virtual_memory().available
    except ImportError:  # pragma: no cover
        return 8e9


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB; NaN where ``resource`` is missing)."""
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except Exception:  # pragma: no cover - non-POSIX
        return float("nan")


def reset_peak_memory(device) -> None:
    """Start a new peak-memory window on a CUDA device (no-op elsewhere)."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gpu_mb(device) -> float | None:
    """Peak memory allocated by torch on a CUDA device since :func:`reset_peak_memory` (MiB), else None."""
    import torch

    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20
