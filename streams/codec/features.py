"""Batch decoding of feature events into one float32 matrix: the inference hot path.

Records written with the current features schema in its one-block layout (a dense vector, no
named fields) are read by one compiled pass over the whole batch
(:func:`loopline.codec.compiled.scan_features`); anything else (other writer versions, arrays
written in several blocks, non-ASCII ids) goes through the full codec. A model with typed inputs
(:mod:`loopline.codec.typed`) takes every record through the full codec and its fields through the
:class:`~loopline.codec.typed.Vectoriser`; a missing optional value is NaN there, for the artifact
to impute. Every record either becomes one matrix row or one :class:`CodecError`, never both and
never neither; a record whose event_id or event_time fails :mod:`loopline.codec.checks` is left to
the full codec, which names the reason (``invalid-id``, ``invalid-time``).

The ids stay bytes: a batch keeps its records' bytes (``text``) and where each row's event_id and
entity_id lie in them (``spans``), which the prediction encoder copies from; the ids as strings
are made only when asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from loopline.codec.checks import MAX_ID_BYTES, MAX_TIME_MS, MIN_TIME_MS
from loopline.codec.compiled import scan_features
from loopline.codec.errors import CodecError
from loopline.codec.framing import Codec
from loopline.codec.typed import Input, Vectoriser
from loopline.codec.varint import write_long

__all__ = ["FeatureBatch", "FeatureDecoder"]


@dataclass
class FeatureBatch:
    """A decoded batch: valid rows in input order, and the errors of the others."""

    matrix: np.ndarray
    """float32 array of shape (rows, width)."""
    text: bytes
    """Bytes holding every row's event_id and entity_id (UTF-8)."""
    spans: np.ndarray
    """int64 array of shape (rows, 4): where each row's event_id (start, end) and entity_id (start,
    end) lie in ``text``."""
    event_times: np.ndarray
    """int64 event times in epoch milliseconds, one per row."""
    index: np.ndarray
    """int64 position in the input of each row."""
    errors: list[tuple[int, CodecError]] = field(default_factory=list)
    """(position in the input, error) of each record that is not a row."""

    def __len__(self) -> int:
        return len(self.event_times)

    def ids(self, rows: np.ndarray | None = None) -> list[bytes]:
        """The event_ids (UTF-8) of ``rows`` (all rows by default): the Kafka keys of their outputs."""
        spans = self.spans if rows is None else self.spans[rows]
        text = self.text
        return [text[start:stop] for start, stop in spans[:, :2].tolist()]

    @cached_property
    def event_ids(self) -> list[str]:
        return [event_id.decode() for event_id in self.ids()]

    @cached_property
    def entity_ids(self) -> list[str]:
        text = self.text
        return [text[start:stop].decode() for start, stop in self.spans[:, 2:].tolist()]

    def take(self, keep: np.ndarray) -> FeatureBatch:
        """The rows where the boolean mask ``keep`` is set (the errors unchanged)."""
        return FeatureBatch(self.matrix[keep], self.text, self.spans[keep], self.event_times[keep],
                            self.index[keep], list(self.errors))  # fmt: skip


class FeatureDecoder:
    """Decode framed ``Features`` records whose vectors must have ``width`` values.

    Args:
        codec: the features codec (its extra writer versions are honoured on the slow path).
        width: the model's number of input features.
        inputs: the model's typed inputs; None for a dense vector.
    """

    def __init__(self, codec: Codec, width: int, inputs: list[Input] | None = None) -> None:
        self.codec = codec
        self.width = width
        self.typed = Vectoriser(inputs) if inputs else None
        self._header = np.frombuffer(codec.header, dtype=np.uint8)
        self._block_head = np.frombuffer(write_long(width), dtype=np.uint8)  # a one-block vector's item count

    @property
    def inputs(self) -> list[Input] | None:
        """The model's typed inputs; None for a dense vector."""
        return self.typed.inputs if self.typed is not None else None

    def _slow(self, data: bytes) -> tuple[str, int, str, bytes]:
        record = self.codec.decode(data)
        if self.typed is not None:
            row = np.asarray(self.typed.row(record["fields"]), dtype="<f4").tobytes()
            return record["event_id"], record["event_time"], record["entity_id"], row
        values = record["values"]
        if len(values) != self.width:
            raise CodecError("wrong-length", f"feature vector has {len(values)} values, the model takes {self.width}")
        floats = np.asarray(values, dtype="<f4").tobytes()
        return record["event_id"], record["event_time"], record["entity_id"], floats

    def decode(self, messages: Sequence[bytes]) -> FeatureBatch:
        """Decode ``messages`` into one batch; invalid records land in ``errors``.

        A record is invalid when it does not decode, has the wrong number of values, or holds a
        NaN or infinity (reason ``non-finite``); for typed inputs, when a field is missing or of the
        wrong type (missing optional values are NaN).
        """
        count = len(messages)
        text = b"".join(messages)
        bounds = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, messages), dtype=np.int64, count=count), out=bounds[1:])
        rows = np.empty((count, 4 * self.width), dtype=np.uint8)  # filled where a record is taken
        spans = np.empty((count, 4), dtype=np.int64)
        times = np.empty(count, dtype=np.int64)
        if self.typed is None:
            taken = scan_features(np.frombuffer(text, dtype=np.uint8), bounds, self._header, self._block_head,
                                  self.width, MAX_ID_BYTES, MIN_TIME_MS, MAX_TIME_MS, rows, spans, times)  # fmt: skip
        else:
            taken = np.zeros(count, dtype=bool)
        errors: list[tuple[int, CodecError]] = []
        ids: list[bytes] = []  # the ids of the records the full codec decodes, after the records' bytes
        end = len(text)
        for i in np.flatnonzero(~taken).tolist():
            try:
                event_id, event_time, entity_id, floats = self._slow(messages[i])
            except CodecError as exc:
                errors.append((i, exc))
                continue
            event_raw, entity_raw = event_id.encode(), entity_id.encode()
            middle = end + len(event_raw)
            spans[i] = (end, middle, middle, middle + len(entity_raw))
            end = middle + len(entity_raw)
            ids += (event_raw, entity_raw)
            times[i] = event_time
            rows[i] = np.frombuffer(floats, dtype=np.uint8)
            taken[i] = True
        matrix = rows.view("<f4")
        batch = FeatureBatch(matrix, text + b"".join(ids) if ids else text, spans, times,
                             np.arange(count, dtype=np.int64), errors)  # fmt: skip
        if not taken.all():
            batch = batch.take(taken)
        if self.typed is None:
            finite = np.isfinite(batch.matrix).all(axis=1)
            if not finite.all():
                batch = _drop_rows(batch, finite)
        batch.errors.sort(key=lambda item: item[0])
        return batch


def _drop_rows(batch: FeatureBatch, keep: np.ndarray) -> FeatureBatch:
    """The batch without the rows where ``keep`` is False; those become ``non-finite`` errors."""
    kept = batch.take(keep)
    for row in np.flatnonzero(~keep).tolist():
        kept.errors.append((int(batch.index[row]), CodecError("non-finite", "feature vector holds NaN or infinity")))
    return kept
