"""The one small interface every runtime backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = ["Backend", "BackendError", "BackendInfo"]


class BackendError(RuntimeError):
    """A backend can't load or run an artifact; the message says why."""


@dataclass(frozen=True)
class BackendInfo:
    """What a loaded backend runs on and what it takes and gives."""

    backend: str
    """``onnxruntime`` or ``torch``."""
    device: str
    """``cpu`` or ``cuda``."""
    n_features: int
    n_classes: int


class Backend(Protocol):
    """A loaded, warmed-up model."""

    info: BackendInfo

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (rows, n_classes) float32 for a float32 batch (rows, n_features)."""
        ...
