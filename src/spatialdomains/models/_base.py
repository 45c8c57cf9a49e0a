from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class FitResult:
    """What a method's ``fit_<name>`` returns."""

    embedding: np.ndarray  #: (N, d) float32, rows in ``adata.obs_names`` order
    history: pd.DataFrame  #: one row per epoch: ``epoch``, ``loss`` and each loss term
    state_dict: dict[str, Any]  #: model weights (CPU tensors)
    extras: dict[str, Any] = field(default_factory=dict)  #: method-specific outputs (e.g. imputed layer)
    info: dict[str, Any] = field(default_factory=dict)  #: device, timings, memory, params used
