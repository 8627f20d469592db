"""The gate: whether a candidate beats the serving version on outcomes both scored (no Kafka).

One test for every promotion decision: the trainer's on held-out outcomes, and staging's on the
live outcomes of the same events (:mod:`loopline.trainer.staging`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loopline.settings import TrainerSettings

__all__ = ["Verdict", "gate"]


@dataclass(frozen=True)
class Verdict:
    """The gate's verdict on held-out outcomes that both versions scored."""

    passed: bool
    candidate: float
    """The candidate's accuracy."""
    serving: float
    """The serving version's accuracy."""
    difference_se: float
    """Standard error of the accuracy difference (paired, per outcome)."""
    figures: str
    """The verdict in words, with the figures."""


def gate(candidate: np.ndarray, serving: np.ndarray, settings: TrainerSettings) -> Verdict:
    """Whether a candidate that got the held-out outcomes ``candidate`` right (booleans) beats a serving
    version that got ``serving`` right: by more than ``min_improvement`` plus ``gate_standard_errors``
    standard errors of the paired difference, reaching ``min_accuracy``.

    The difference is taken per outcome, so the noise that counts is where the two disagree: two
    versions that score the same rows alike have a standard error of 0 and a difference of 0, and a
    tie does not pass.
    """
    n = len(candidate)
    difference = candidate.astype(np.float64) - serving.astype(np.float64)
    ours, theirs = float(candidate.mean()), float(serving.mean())
    se = float(difference.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    needed = settings.min_improvement + settings.gate_standard_errors * se
    beats = ours - theirs > needed
    floor = ours >= settings.min_accuracy
    figures = (f"held-out accuracy {ours:.4f} against {theirs:.4f} on {n} outcomes: {ours - theirs:+.4f}, "
               f"{'more' if beats else 'not more'} than the {needed:+.4f} needed "
               f"({settings.min_improvement:+.4f} + {settings.gate_standard_errors:g} standard errors of {se:.4f})")  # fmt: skip
    if not floor:
        figures += f"; below the floor of {settings.min_accuracy:.4f}"
    return Verdict(beats and floor, ours, theirs, se, figures)
