"""How drift state is saved: keys and plain values that a fresh core or monitor loads back, never pickles.

Every save is a :data:`Changes` mapping, the keys whose value changed with their new value. A value
that holds settings or counts is a JSON head (:func:`dump_head`, :func:`load_head`) carrying
``"format": 1``. River's detectors can't be read (ADWIN is a Rust object), so a monitor keeps the
inputs its detectors had since its last restart in a :class:`History` and a restore replays them into
fresh detectors.

A history's head is ``{"dtype": "|u1" or "<f8", "shape": row shape, "chunk": rows per chunk,
"first": number of the first chunk kept, "count": rows since the restart}``; its rows are saved as
``chunk/<n>``: rows ``n * chunk`` to ``(n + 1) * chunk`` (fewer in the last one), counted from the
restart, as a raw little-endian C-order array. Beyond its cap the oldest whole chunks are dropped,
and a detector restored from what is left only approximates the one that ran (it forgot the oldest
inputs, as a long-running ADWIN window mostly has too).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["Changes", "History", "dump_head", "load_head"]

Changes = dict[bytes, bytes | None]
"""Keys whose value changed since the last save, with the new value (None: deleted)."""


def dump_head(head: Mapping[str, Any]) -> bytes:
    """``head`` as compact JSON, with ``"format": 1`` (floats keep every digit: they load back equal)."""
    return json.dumps({"format": 1, **head}, separators=(",", ":")).encode()


def load_head(raw: bytes) -> dict[str, Any]:
    """The JSON head ``raw``; ValueError for a format this code does not know."""
    head: dict[str, Any] = json.loads(raw)
    if head.get("format") != 1:
        raise ValueError(f"unknown state format {head.get('format')!r}")
    return head


class History:
    """The inputs a monitor's detectors had since its last restart, in numbered chunks of ``chunk`` rows.

    Rows are counted from the restart; chunk ``n`` holds rows ``n * chunk`` onwards. Beyond ``cap``
    rows the oldest whole chunks are dropped. :meth:`changes` writes only the chunks that changed
    since its last call and deletes those no longer kept.
    """

    def __init__(self, dtype: str, shape: tuple[int, ...], chunk: int, cap: int) -> None:
        self.dtype, self.shape, self.chunk, self.cap = np.dtype(dtype), shape, chunk, cap
        self.stored = range(0)  # the chunk numbers saved
        self.clear()

    def clear(self) -> None:
        """Forget every row (a restart); the next :meth:`changes` deletes the saved chunks."""
        self.data = np.empty((self.chunk, *self.shape), self.dtype)
        self.length = 0
        self.first = 0  # the number of the first chunk kept
        self.saved = 0  # rows saved, counted from the restart

    @property
    def count(self) -> int:
        """Rows since the restart, dropped ones included."""
        return self.first * self.chunk + self.length

    def rows(self) -> np.ndarray:
        """The rows kept, oldest first."""
        return self.data[: self.length]

    def extend(self, rows: Sequence[Any] | np.ndarray) -> None:
        """Add ``rows`` at the end, dropping the oldest chunks beyond the cap."""
        end = self.length + len(rows)
        if end > len(self.data):
            grown = np.empty((max(end, min(2 * len(self.data), self.cap + self.chunk)), *self.shape), self.dtype)
            grown[: self.length] = self.data[: self.length]
            self.data = grown
        self.data[self.length : end] = rows
        self.length = end
        if self.length > self.cap:
            drop = -(-(self.length - self.cap) // self.chunk) * self.chunk
            self.data[: self.length - drop] = self.data[drop : self.length]
            self.length -= drop
            self.first += drop // self.chunk

    def head(self) -> dict[str, Any]:
        return {"dtype": self.dtype.str, "shape": list(self.shape), "chunk": self.chunk, "first": self.first,
                "count": self.count}  # fmt: skip

    def changes(self) -> Changes:
        """The chunks written (``chunk/<n>``) or deleted since the last call."""
        live = range(self.first, -(-self.count // self.chunk))
        changed: Changes = {b"chunk/%d" % n: None for n in self.stored if n not in live}
        for n in range(max(self.first, self.saved // self.chunk), live.stop):
            start = (n - self.first) * self.chunk
            changed[b"chunk/%d" % n] = self.data[start : min(start + self.chunk, self.length)].tobytes()
        self.stored, self.saved = live, self.count
        return changed

    def load(self, head: Mapping[str, Any], items: Mapping[bytes, bytes]) -> None:
        """Take the rows :meth:`head` and :meth:`changes` saved."""
        self.clear()
        live = range(head["first"], -(-head["count"] // self.chunk))
        dtype = np.dtype(head["dtype"])
        self.first = live.start
        for n in live:
            self.extend(np.frombuffer(items[b"chunk/%d" % n], dtype).reshape(-1, *self.shape))
        self.stored, self.saved = live, self.count
