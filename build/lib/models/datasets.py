"""Seeded synthetic tabular data with a known concept, for bootstrap models, tests and the demo.

A :class:`Concept` labels feature vectors with a fixed random two-layer network; switching to a
concept of another seed is an abrupt concept drift, and shifting a feature's mean is a covariate
drift on that feature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Concept", "feature_names", "sample"]


def feature_names(n_features: int) -> list[str]:
    """``x0``, ``x1``, ... : the default feature names."""
    return [f"x{i}" for i in range(n_features)]


@dataclass(frozen=True)
class Concept:
    """A labelling rule: ``argmax(tanh(x @ w1) @ w2)`` with weights drawn from ``seed``."""

    seed: int
    n_features: int
    n_classes: int = 2
    width: int = 16

    def label(self, x: np.ndarray) -> np.ndarray:
        """Class indices (int64) of the rows of ``x``."""
        rng = np.random.default_rng(self.seed)
        w1 = rng.normal(size=(self.n_features, self.width)) / np.sqrt(self.n_features)
        w2 = rng.normal(size=(self.width, self.n_classes))
        return np.argmax(np.tanh(x @ w1 * 2.0) @ w2, axis=1).astype(np.int64)


def sample(
    concept: Concept, rows: int, seed: int, shift: dict[int, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` standard-normal float32 feature vectors (feature ``i`` moved by ``shift[i]``) and labels.

    The labels come from the unshifted concept applied to the shifted features, so a covariate
    shift changes what the model sees without changing the rule.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, concept.n_features)).astype(np.float32)
    for feature, delta in (shift or {}).items():
        x[:, feature] += np.float32(delta)
    return x, concept.label(x)
