"""Spot lattices for tests (a module, not conftest: two conftest.py files would shadow each other)."""

from __future__ import annotations

import numpy as np


def hex_coords(n_rows: int, n_cols: int, pitch: float = 100.0) -> np.ndarray:
    """Visium-like hex lattice: (x, y) of spots at even (row + col)."""
    rows, cols = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    mask = (rows + cols) % 2 == 0
    return np.stack([cols[mask] * pitch / 2, rows[mask] * pitch * np.sqrt(3) / 2], axis=1).astype(float)
