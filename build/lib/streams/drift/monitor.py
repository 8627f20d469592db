"""Drift monitors of one model version: numbers in, detections out (no Kafka, no Avro).

Both monitors take their first ``warmup`` samples as the version's reference and raise nothing
before it is set. A drift restarts the monitor: fresh detectors and a new reference from the next
``warmup`` samples. A stream that settles at its new level then raises nothing more, and a
detector still dropping its pre-drift window does not fire twice for one change.

- :class:`ErrorMonitor` (concept drift) feeds every outcome's error (0 or 1) to one detector and
  reports a drift only when the recent error rate is above the reference one by more than two
  standard errors. A detection with the error clearly lower restarts the monitor without a report
  (the model got better: a new reference); one with the error about level is a detector's noise.
- :class:`BlockMonitor` (covariate drift on features, prediction drift on scores) runs one detector
  per column on block means standardised by the reference, ``(block mean - mean) / std``: one
  detector update per column per block keeps the cost per sample small, and the standardisation
  makes one threshold mean the same for every column.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from streams.drift.detectors import make_detector
from streams.quality import SlidingMean

__all__ = ["BlockMonitor", "Detection", "ErrorMonitor"]


@dataclass(frozen=True)
class Detection:
    """A detector fired at input ``index`` of the batch given to ``update``, its ``samples``-th sample."""

    index: int
    samples: int
    column: str | None
    statistics: dict[str, float]


class ErrorMonitor:
    """Concept drift: a detector on the per-outcome error of one model version."""

    def __init__(self, detector: str, params: Mapping[str, float], warmup: int, recent: int) -> None:
        self.make = lambda: make_detector(detector, params, binary_input=True)
        self.warmup = warmup
        self.samples = 0
        self.recent = SlidingMean(recent)
        self._restart()

    def _restart(self) -> None:
        self.detector = self.make()
        self.reference: float | None = None
        self.warm_errors = 0
        self.warm_samples = 0

    def update(self, errors: Sequence[int]) -> list[Detection]:
        """Feed one batch of errors (1 = wrong) in order."""
        detections = []
        recent = self.recent
        for index, error in enumerate(errors):
            self.detector.update(error)
            recent.add(error)
            self.samples += 1
            if self.reference is None:
                self.warm_errors += error
                self.warm_samples += 1
                if self.warm_samples == self.warmup:
                    self.reference = self.warm_errors / self.warmup
            elif self.detector.drift_detected and (shift := self._shift()):
                if shift > 0:
                    statistics = {"error_reference": self.reference, "error_recent": recent.mean}
                    detections.append(Detection(index, self.samples, None, statistics))
                self._restart()
        return detections

    def _shift(self) -> int:
        """+1 (-1) when the recent error rate is above (below) the reference by more than two standard errors, else 0."""
        assert self.reference is not None
        spread = (max(self.reference * (1 - self.reference), 1e-6) / len(self.recent)) ** 0.5
        difference = self.recent.mean - self.reference
        return 0 if abs(difference) <= 2 * spread else 1 if difference > 0 else -1


class BlockMonitor:
    """Covariate or prediction drift: one detector per column on standardised block means."""

    def __init__(
        self,
        columns: Sequence[str],
        detector: str,
        params: Mapping[str, float],
        warmup: int,
        block: int,
        recent: int,
    ) -> None:
        self.columns = list(columns)
        self.make = lambda: [make_detector(detector, params) for _ in self.columns]
        self.warmup, self.block = warmup, block
        self.samples = 0
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0
        self.recent: deque[np.ndarray] = deque(maxlen=max(1, recent // block))
        self._restart()

    def _restart(self) -> None:
        self.detectors = self.make()
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def update(self, rows: np.ndarray) -> list[Detection]:
        """Feed one batch of rows (one row per sample, one column per monitored value) in order."""
        detections: list[Detection] = []
        start = 0
        while start < len(rows):
            needed = self.warmup if self.mean is None else self.block
            chunk = rows[start : start + needed - self.pending_rows]
            start += len(chunk)
            self.samples += len(chunk)
            self.pending.append(chunk)
            self.pending_rows += len(chunk)
            if self.pending_rows < needed:
                continue
            full = np.concatenate(self.pending).astype(np.float64)
            self.pending, self.pending_rows = [], 0
            if self.mean is None:
                self.mean = full.mean(axis=0)
                self.std = np.maximum(full.std(axis=0), 1e-9)
                continue
            detections += self._block(full.mean(axis=0), start - 1)
        return detections

    def _block(self, means: np.ndarray, index: int) -> list[Detection]:
        assert self.mean is not None and self.std is not None
        self.recent.append(means)
        shifts = (means - self.mean) / self.std
        fired = []
        for column, (detector, shift) in enumerate(zip(self.detectors, shifts.tolist(), strict=True)):
            detector.update(shift)
            if detector.drift_detected:
                fired.append(column)
        if not fired:
            return []
        recent = np.mean(self.recent, axis=0)
        detections = [
            Detection(
                index,
                self.samples,
                self.columns[column],
                {
                    "mean_reference": float(self.mean[column]),
                    "std_reference": float(self.std[column]),
                    "mean_recent": float(recent[column]),
                    "shift_in_std": float((recent[column] - self.mean[column]) / self.std[column]),
                },
            )
            for column in fired
        ]
        self._restart()
        return detections
