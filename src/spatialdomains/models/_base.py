from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .._constants import SLICE_KEY


@dataclass
class FitResult:
    """What a method's ``fit_<name>`` returns."""

    embedding: np.ndarray  #: (N, d) float32, rows in ``adata.obs_names`` order
    history: pd.DataFrame  #: one row per epoch: ``epoch``, ``loss`` and each loss term
    state_dict: dict[str, Any]  #: model weights (CPU tensors)
    extras: dict[str, Any] = field(default_factory=dict)  #: method-specific outputs (e.g. imputed layer)
    info: dict[str, Any] = field(default_factory=dict)  #: device, timings, memory, params used


def slice_codes(adata) -> tuple[np.ndarray, list[str]]:
    """``(N,)`` int64 code of each spot's ``obs['slice']`` (all 0 without one) and the slice names."""
    if SLICE_KEY not in adata.obs:
        return np.zeros(adata.n_obs, dtype=np.int64), ["0"]
    cat = adata.obs[SLICE_KEY].astype("category")
    return cat.cat.codes.to_numpy().astype(np.int64), [str(c) for c in cat.cat.categories]
