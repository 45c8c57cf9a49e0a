"""Shared fixtures: small synthetic slices built once per session and copied per test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def _layered_slice():
    from spatialdomains.synthetic import make_slice

    return make_slice(n_spots=1200, n_domains=4, n_genes=300, seed=1)


@pytest.fixture
def layered_slice(_layered_slice):
    return _layered_slice.copy()


@pytest.fixture(scope="session")
def _two_slices():
    from spatialdomains.synthetic import make_slices

    return make_slices(n_slices=2, n_spots=800, n_domains=4, n_genes=300, batch_effect=0.3, seed=2)


@pytest.fixture
def two_slices(_two_slices):
    return [a.copy() for a in _two_slices]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
