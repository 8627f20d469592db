"""Sliding-window means: online accuracy, log loss and label rate over the last N samples."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

__all__ = ["LOG_LOSS_FLOOR", "SlidingMean"]

LOG_LOSS_FLOOR = 1e-7
"""Scores are clipped here before the log, so that a label scored 0 costs a finite loss (about 16.1)."""


class SlidingMean:
    """The mean of the last ``size`` values added, updated in O(1).

    >>> window = SlidingMean(2)
    >>> for value in (1.0, 0.0, 0.0):
    ...     window.add(value)
    >>> window.mean
    0.0
    """

    def __init__(self, size: int) -> None:
        self.values: deque[float] = deque(maxlen=size)
        self.total = 0.0
        self._adds = 0

    def add(self, value: float) -> None:
        """Add ``value``, dropping the oldest one when the window is full."""
        if len(self.values) == self.values.maxlen:
            self.total -= self.values[0]
        self.values.append(value)
        self.total += value
        self._adds += 1
        if self._adds == self.values.maxlen:
            self._adds = 0
            self.total = sum(self.values)  # no rounding error piles up over a long stream

    def state(self) -> dict[str, Any]:
        """The window as JSON-ready data: its size, values (oldest first), running total and the adds
        since the total was last recomputed; all of them, so that a restored window rounds the same."""
        return {"size": self.values.maxlen, "values": list(self.values), "total": self.total, "adds": self._adds}

    def load(self, state: Mapping[str, Any]) -> None:
        """Take the window ``state`` gave. Saved with another size, it keeps its newest values and
        recomputes the total."""
        self.values.clear()
        self.values.extend(state["values"])
        if state["size"] == self.values.maxlen:
            self.total, self._adds = state["total"], state["adds"]
        else:
            self.total, self._adds = sum(self.values), 0

    def __len__(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        """The mean of the window (0.0 while it is empty)."""
        return self.total / len(self.values) if self.values else 0.0
