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
  makes one threshold mean the same for every column. A standardised mean is clipped at
  :data:`BLOCK_CLIP` standard errors of a block mean: a drift is a lasting move, and a block or
  two that one extreme value threw far out no longer fires a detector whose window is long.

State
-----
A monitor's state is plain data that ``changes`` hands out per batch and ``load`` takes back, so that
a restarted worker goes on where the last one stopped (same detections, same outputs). A detector is
rebuilt by replaying its inputs since the monitor's last restart, kept in a
:class:`~loopline.drift.state.History`, into a fresh one built with the same parameters (KSWIN is
seeded: the replay is deterministic). The history holds at most :data:`ERROR_HISTORY` errors or
:data:`BLOCK_HISTORY` block means (fewer for a monitor of many columns: at most :data:`BLOCK_VALUES`
numbers, whole chunks, at least one).

Keys are relative to the monitor (its owner gives them a prefix); values are never pickles:

- ``head``: UTF-8 JSON, ``{"format": 1, "config": ..., "samples": n, "recent": ..., "history": ...}``.
  ``config`` holds the settings the state means something under (detector, params, warmup,
  recent, chunk, and block, clip and columns for a block monitor): a state saved under others is
  refused and the monitor starts afresh. ``samples`` counts every sample seen; ``recent`` is the
  recent window (:meth:`SlidingMean.state` for errors, the number of its block means for a block
  monitor). ``history`` is the history's head (:mod:`loopline.drift.state`). An error
  monitor adds ``reference`` (null during warm-up), ``warm_errors`` and ``warm_samples``; a block
  monitor adds ``reference`` (true once the warm-up set it) and ``pending``, ``{"dtype", "shape"}``
  of the rows waiting for a full block (or the warm-up).
- ``chunk/<n>``: the history's chunks: the errors (0 or 1, one byte each) that fed the error
  detector, or the standardised block means, one float64 per column, that fed the column detectors.
- ``pending`` (block monitor): the pending rows, a raw little-endian array.
- ``recent`` (block monitor): the recent window's block means, float64 rows, raw little-endian.
- ``reference`` (block monitor): the reference's mean and standard deviation per column, two
  float64 rows, raw little-endian; written when the warm-up sets it, deleted at a restart.

Saving is incremental: a batch rewrites the head, the pending rows (and a block monitor's recent
window), the last chunk and any new ones; a restart deletes the chunks of the history it ends. Every
per-column number of a block monitor is raw: JSON made a 5,000-feature monitor's head 850 KB.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from loopline.drift.detectors import make_detector
from loopline.drift.state import Changes, History, dump_head, load_head
from loopline.quality import SlidingMean

__all__ = [
    "BLOCK_CHUNK",
    "BLOCK_CLIP",
    "BLOCK_HISTORY",
    "BLOCK_VALUES",
    "CHUNK_VALUES",
    "ERROR_CHUNK",
    "ERROR_HISTORY",
    "BlockMonitor",
    "Detection",
    "ErrorMonitor",
    "block_chunk",
    "block_history",
    "reference_std",
]

ERROR_CHUNK = 4096
"""Errors per saved chunk of an error monitor's history (4 KiB)."""
ERROR_HISTORY = 100_000
"""Most errors since its restart an error monitor keeps to rebuild its detector (100 KB, one byte each)."""
BLOCK_CHUNK = 128
"""Block means per saved chunk of a block monitor's history: 4096 samples at the default block of 32
(fewer for a monitor of many columns, :data:`CHUNK_VALUES`)."""
CHUNK_VALUES = 1 << 13
"""Most numbers in a saved chunk of a block monitor's history (64 KiB): :data:`BLOCK_CHUNK` block means up
to 64 columns, fewer beyond (one at 5,000 columns). A batch rewrites its history's last chunk: with
chunks of 128 block means, a 5,000-feature model wrote 27.5 KB of chunks per outcome in batches of
100 outcomes, more than the outcomes themselves (20 KB); one block mean a chunk writes 1.3 KB."""
BLOCK_HISTORY = 10_000
"""Most block means since its restart a block monitor keeps to rebuild its detectors (80 KB per column)."""
BLOCK_CLIP = 20.0
"""Standard errors of a block mean (``std / sqrt(block)``) at which a standardised block mean is clipped:
3.5 standard deviations at blocks of 32, beyond a 3-std shift, never reached by chance on a normal
feature. On 1,000 stationary log-normal features (sigma 2) over 64,000 samples, ADWIN fired twice
without the clip and never with it; a 3-std shift is found as soon."""
BLOCK_VALUES = 1 << 21
"""Most numbers in a block monitor's history, over all its columns (16 MiB): :data:`BLOCK_HISTORY` block
means up to 209 columns, fewer beyond (384 at 5,000 columns, 12,288 samples at blocks of 32), so that a
wide model's history neither holds 400 MB per version nor takes 50 million detector updates to replay."""


def block_chunk(columns: int) -> int:
    """Block means per saved chunk of a monitor of ``columns`` columns: :data:`BLOCK_CHUNK`, or as many as
    fit in :data:`CHUNK_VALUES` numbers (one at least)."""
    return max(1, min(BLOCK_CHUNK, CHUNK_VALUES // max(columns, 1)))


def block_history(columns: int) -> int:
    """The most block means a monitor of ``columns`` columns keeps: :data:`BLOCK_HISTORY`, or the whole
    chunks that fit in :data:`BLOCK_VALUES` numbers (one chunk at least)."""
    fit, chunk = BLOCK_VALUES // max(columns, 1), block_chunk(columns)
    return BLOCK_HISTORY if fit >= BLOCK_HISTORY else max(chunk, fit // chunk * chunk)


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
        self.config = {"detector": detector, "params": dict(params), "warmup": warmup, "recent": recent,
                       "chunk": ERROR_CHUNK}  # fmt: skip
        self.warmup = warmup
        self.samples = 0
        self.recent = SlidingMean(recent)
        self.history = History("|u1", (), ERROR_CHUNK, ERROR_HISTORY)
        self.changed = False
        self._restart()

    def _restart(self) -> None:
        self.detector = self.make()
        self.history.clear()
        self.reference: float | None = None
        self.warm_errors = 0
        self.warm_samples = 0

    def update(self, errors: Sequence[int]) -> list[Detection]:
        """Feed one batch of errors (1 = wrong) in order."""
        detections = []
        recent = self.recent
        since = 0  # the first error after the last restart
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
                since = index + 1
        self.history.extend(errors[since:])
        self.changed = True
        return detections

    def changes(self) -> Changes:
        """The keys of the state that changed since the last call: ``head`` and ``chunk/<n>``."""
        if not self.changed:
            return {}
        self.changed = False
        head = {"config": self.config, "samples": self.samples, "reference": self.reference,
                "warm_errors": self.warm_errors, "warm_samples": self.warm_samples, "recent": self.recent.state(),
                "history": self.history.head()}  # fmt: skip
        return {b"head": dump_head(head), **self.history.changes()}

    def load(self, items: Mapping[bytes, bytes]) -> bool:
        """Take the state saved by :meth:`changes` (every key it left); False, the monitor left fresh,
        when it was saved under other settings."""
        head = load_head(items[b"head"])
        if head["config"] != self.config:
            return False
        self._restart()
        self.samples, self.reference = head["samples"], head["reference"]
        self.warm_errors, self.warm_samples = head["warm_errors"], head["warm_samples"]
        self.recent.load(head["recent"])
        self.history.load(head["history"], items)
        update = self.detector.update
        for error in self.history.rows().tolist():
            update(error)
        return True

    def _shift(self) -> int:
        """+1 (-1) when the recent error rate is above (below) the reference by more than two standard errors, else 0."""
        assert self.reference is not None
        spread = (max(self.reference * (1 - self.reference), 1e-6) / len(self.recent)) ** 0.5
        difference = self.recent.mean - self.reference
        return 0 if abs(difference) <= 2 * spread else 1 if difference > 0 else -1


def column_means(rows: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """The mean of each column of ``rows`` over its values that are not NaN (a typed model's missing
    optional values); ``missing``'s where a column has none, so that a block without values moves nothing."""
    present = ~np.isnan(rows)
    counts = present.sum(axis=0)
    sums = np.where(present, rows, 0.0).sum(axis=0)
    means: np.ndarray = np.where(counts > 0, sums / np.maximum(counts, 1), missing)
    return means


def reference_std(std: np.ndarray, mean: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The standard deviations block means are standardised by: ``std``, except for a column that held one
    value over the ``counts`` samples of its warm-up (an indicator never set, a count that stayed at zero).

    Such a column gets the spread it would have had with one of those samples off by ``max(|mean|, 1)``,
    that is ``max(|mean|, 1) / sqrt(count)``, so that a value it takes later moves a block mean by about as
    many standard deviations as in a column set once in its warm-up. With its spread of zero, one set value
    in a block would be a shift of millions of standard deviations: on 2,000 indicators set once in 1,000
    rows, ADWIN fired five times in 24,000 samples, and never with this spread.
    """
    scale = np.maximum(np.abs(mean), 1.0)
    flat = std <= 1e-9 * scale
    floor: np.ndarray = np.where(flat, scale / np.sqrt(np.maximum(counts, 1)), std)
    return floor


class BlockMonitor:
    """Covariate or prediction drift: one detector per column on standardised block means (NaN values
    left out of a block's mean)."""

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
        self.config = {"columns": self.columns, "detector": detector, "params": dict(params), "warmup": warmup,
                       "block": block, "clip": BLOCK_CLIP, "recent": recent,
                       "chunk": block_chunk(len(self.columns))}  # fmt: skip
        self.warmup, self.block = warmup, block
        self.clip = BLOCK_CLIP / np.sqrt(block)
        self.samples = 0
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0
        self.recent: deque[np.ndarray] = deque(maxlen=max(1, recent // block))
        width = len(self.columns)
        self.history = History("<f8", (width,), block_chunk(width), block_history(width))
        self.changed = False
        self._restart()

    def _restart(self) -> None:
        self.detectors = self.make()
        self.history.clear()
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.reference_changed = True

    def update(self, rows: np.ndarray) -> list[Detection]:
        """Feed one batch of rows (one row per sample, one column per monitored value) in order."""
        detections: list[Detection] = []
        start = 0
        self.changed = True
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
                self.mean = column_means(full, np.zeros(full.shape[1]))
                spread = column_means((full - self.mean) ** 2, np.ones(full.shape[1]))
                self.std = reference_std(np.sqrt(spread), self.mean, (~np.isnan(full)).sum(axis=0))
                self.reference_changed = True
                # The detectors start with the reference in their window, so that a change soon after
                # the warm-up has a baseline to stand out from.
                for first in range(0, len(full) - self.block + 1, self.block):
                    self._feed(column_means(full[first : first + self.block], self.mean))
                continue
            detections += self._block(column_means(full, self.mean), start - 1)
        return detections

    def _feed(self, means: np.ndarray) -> list[int]:
        """Update every column's detector with one block's standardised mean (clipped); the columns that fired."""
        assert self.mean is not None and self.std is not None
        fired = []
        shifts = np.clip((means - self.mean) / self.std, -self.clip, self.clip)
        self.history.extend(shifts[np.newaxis])
        for column, (detector, shift) in enumerate(zip(self.detectors, shifts.tolist(), strict=True)):
            detector.update(shift)
            if detector.drift_detected:
                fired.append(column)
        return fired

    def _block(self, means: np.ndarray, index: int) -> list[Detection]:
        assert self.mean is not None and self.std is not None
        self.recent.append(means)
        fired = self._feed(means)
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

    def changes(self) -> Changes:
        """The keys of the state that changed since the last call: ``head``, ``pending``, ``recent``,
        ``reference`` and ``chunk/<n>``."""
        if not self.changed:
            return {}
        self.changed = False
        pending = np.concatenate(self.pending) if self.pending else np.empty((0, len(self.columns)))
        pending = pending.astype(pending.dtype.newbyteorder("<"), copy=False)
        recent = np.array(self.recent, dtype="<f8").reshape(len(self.recent), len(self.columns))
        head = {
            "config": self.config,
            "samples": self.samples,
            "reference": self.mean is not None,
            "recent": len(recent),
            "pending": {"dtype": pending.dtype.str, "shape": list(pending.shape)},
            "history": self.history.head(),
        }
        changed: Changes = {b"head": dump_head(head), b"pending": pending.tobytes(), b"recent": recent.tobytes()}
        if self.reference_changed:
            self.reference_changed = False
            reference = None if self.mean is None or self.std is None else np.stack([self.mean, self.std])
            changed[b"reference"] = None if reference is None else reference.astype("<f8").tobytes()
        return {**changed, **self.history.changes()}

    def load(self, items: Mapping[bytes, bytes]) -> bool:
        """Take the state saved by :meth:`changes` (every key it left); False, the monitor left fresh,
        when it was saved under other settings."""
        head = load_head(items[b"head"])
        if head["config"] != self.config:
            return False
        self._restart()
        self.samples = head["samples"]
        width = len(self.columns)
        if head["reference"]:
            self.mean, self.std = np.frombuffer(items[b"reference"], "<f8").reshape(2, width).astype(np.float64)
        self.reference_changed = False
        self.recent.clear()
        self.recent.extend(np.frombuffer(items[b"recent"], "<f8").reshape(head["recent"], width).astype(np.float64))
        pending = np.frombuffer(items[b"pending"], head["pending"]["dtype"]).reshape(head["pending"]["shape"])
        self.pending, self.pending_rows = ([pending.copy()] if len(pending) else []), len(pending)
        self.history.load(head["history"], items)
        for shifts in self.history.rows().tolist():
            for detector, shift in zip(self.detectors, shifts, strict=True):
                detector.update(shift)
        return True
