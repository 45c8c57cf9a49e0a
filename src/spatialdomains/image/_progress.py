"""Progress lines for the image steps: a task log (``.command.log``) has no tqdm bar, so log ~10 lines a run."""

from __future__ import annotations

import math
import time

from .. import _logging as logg

__all__ = ["Progress", "fmt_seconds"]


def fmt_seconds(seconds: float) -> str:
    """``42 s``, ``3.5 min`` or ``1.2 h``."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Log ``"<what>: done/total <units> (pct), rate, ~eta left"`` every ``every`` units (default: a tenth).

    ``update(done)`` takes the running count; the last unit always logs. Times are wall-clock from creation.
    """

    def __init__(self, total: int, what: str, unit: str, *, every: int | None = None):
        self.total, self.what, self.unit = int(total), what, unit
        self.units = unit + ("es" if unit.endswith(("ch", "sh", "s", "x")) else "s")
        self.every = max(1, int(every) if every else math.ceil(self.total / 10))
        self.start = time.perf_counter()
        self._next = self.every

    def update(self, done: int) -> None:
        if done < self._next and done < self.total:
            return
        while self._next <= done:
            self._next += self.every
        elapsed = time.perf_counter() - self.start
        rate = done / max(elapsed, 1e-9)
        left = (self.total - done) / rate if rate > 0 else float("nan")
        speed = f"{rate:.1f} {self.units}/s" if rate >= 1 else f"{1 / max(rate, 1e-12):.2f} s per {self.unit}"
        logg.info(f"{self.what}: {done}/{self.total} {self.units} ({100 * done / max(self.total, 1):.0f}%), {speed}, "
                  f"{fmt_seconds(elapsed)} so far" + (f", ~{fmt_seconds(left)} left" if done < self.total else ""))
