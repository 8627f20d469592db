"""Batch decoding of feature events into one float32 matrix: the inference hot path.

Records written with the current features schema take a fast path that reads the three leading
fields and slices the float block straight out of the message (a dense vector, no named fields);
anything else (other writer versions, arrays written in several blocks) goes through the full
codec. A model with typed inputs (:mod:`streams.codec.typed`) takes every record through the full
codec and its fields through the :class:`~streams.codec.typed.Vectoriser`; a missing optional value
is NaN there, for the artifact to impute. Every record either
becomes one matrix row or one :class:`CodecError`, never both and never neither; a record whose
event_id or event_time fails :mod:`streams.codec.checks` leaves the fast path, and the full codec
names the reason (``invalid-id``, ``invalid-time``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from streams.codec.checks import MAX_ID_BYTES, MAX_TIME_MS, MIN_TIME_MS
from streams.codec.errors import CodecError
from streams.codec.framing import HEADER_SIZE, Codec
from streams.codec.typed import Input, Vectoriser
from streams.codec.varint import read_long, write_long

__all__ = ["FeatureBatch", "FeatureDecoder"]


@dataclass
class FeatureBatch:
    """A decoded batch: valid rows in input order, and the errors of the others."""

    matrix: np.ndarray
    """float32 array of shape (rows, width)."""
    event_ids: list[str]
    entity_ids: list[str]
    event_times: np.ndarray
    """int64 event times in epoch milliseconds, one per row."""
    index: list[int]
    """Position in the input of each row."""
    errors: list[tuple[int, CodecError]] = field(default_factory=list)
    """(position in the input, error) of each record that is not a row."""

    def __len__(self) -> int:
        return len(self.event_ids)


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
        # A vector of `width` floats written as one block (count, 4*width bytes, end marker 0), then an
        # empty map of fields (0).
        self._block_head = write_long(width)
        self._tail_size = len(self._block_head) + 4 * width + 2

    @property
    def inputs(self) -> list[Input] | None:
        """The model's typed inputs; None for a dense vector."""
        return self.typed.inputs if self.typed is not None else None

    def _fast(self, data: bytes) -> tuple[str, int, str, bytes] | None:
        """The fields of a valid record in the current schema and one-block layout, else None."""
        if data[:HEADER_SIZE] != self.codec.header:
            return None
        try:
            size, pos = read_long(data, HEADER_SIZE)
            event_id = data[pos : pos + size]
            event_time, pos = read_long(data, pos + size)
            size2, pos = read_long(data, pos)
            entity_id = data[pos : pos + size2]
            pos += size2
        except IndexError:
            return None
        if not 0 < size <= MAX_ID_BYTES or size2 < 0 or not MIN_TIME_MS <= event_time <= MAX_TIME_MS:
            return None
        head_end = pos + len(self._block_head)
        if len(data) - pos != self._tail_size or data[pos:head_end] != self._block_head or data[-2:] != b"\0\0":
            return None
        try:
            return event_id.decode(), event_time, entity_id.decode(), data[head_end:-2]
        except UnicodeDecodeError:
            return None

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
        event_ids: list[str] = []
        entity_ids: list[str] = []
        times: list[int] = []
        blocks: list[bytes] = []
        index: list[int] = []
        errors: list[tuple[int, CodecError]] = []
        for i, data in enumerate(messages):
            fields = self._fast(data) if self.typed is None else None
            if fields is None:
                try:
                    fields = self._slow(data)
                except CodecError as exc:
                    errors.append((i, exc))
                    continue
            event_ids.append(fields[0])
            times.append(fields[1])
            entity_ids.append(fields[2])
            blocks.append(fields[3])
            index.append(i)
        matrix = np.frombuffer(b"".join(blocks), dtype="<f4").reshape(len(blocks), self.width)
        batch = FeatureBatch(matrix, event_ids, entity_ids, np.array(times, dtype=np.int64), index, errors)
        finite = np.isfinite(matrix).all(axis=1) if self.typed is None else np.ones(len(matrix), dtype=bool)
        if not finite.all():
            batch = _drop_rows(batch, finite)
        batch.errors.sort(key=lambda item: item[0])
        return batch


def _drop_rows(batch: FeatureBatch, keep: np.ndarray) -> FeatureBatch:
    """The batch without the rows where ``keep`` is False; those become ``non-finite`` errors."""
    errors = list(batch.errors)
    for row in np.flatnonzero(~keep):
        errors.append((batch.index[row], CodecError("non-finite", "feature vector holds NaN or infinity")))
    rows = np.flatnonzero(keep).tolist()
    return FeatureBatch(
        matrix=batch.matrix[keep],
        event_ids=[batch.event_ids[r] for r in rows],
        entity_ids=[batch.entity_ids[r] for r in rows],
        event_times=batch.event_times[keep],
        index=[batch.index[r] for r in rows],
        errors=errors,
    )
