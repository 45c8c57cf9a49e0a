"""Logging in the scanpy style: ``start = info("running …")`` then ``info("finished", time=start)``."""

from __future__ import annotations

import logging
import time as _time

logger = logging.getLogger("spatialdomains")


def configure(level: int | str = logging.INFO) -> None:
    """Send ``spatialdomains`` log records to stderr with a timestamp (idempotent)."""
    if isinstance(level, str):
        level = getattr(logging, level.upper())
    if not any(getattr(h, "_spatialdomains", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        handler._spatialdomains = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def info(msg: str, *, time: float | None = None, deep: str | None = None) -> float:
    """Log ``msg`` (with the elapsed time since ``time`` and the slots written in ``deep``); return now."""
    now = _time.perf_counter()
    if time is not None:
        msg = f"{msg} ({now - time:.2f} s)"
    if deep:
        msg = f"{msg}\n    {deep}"
    logger.info(msg)
    return now


def warning(msg: str) -> None:
    logger.warning(msg)


def debug(msg: str) -> None:
    logger.debug(msg)
