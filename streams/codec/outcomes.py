"""Outcome records for the drift agent: the fields it reads, without building all sixteen.

Decoding an outcome with fastavro makes a dict of every field, the feature values a list of
Python floats among them: most of the drift core's time per outcome. :class:`OutcomeReader`
reads a record in the current writer schema with its arrays in one block (what fastavro and
Avro's Java encoder write) straight from the bytes, checking what the codec checks, and leaves
any other record (another writer schema, arrays in several blocks, anything it does not accept)
to the codec, which decodes it or raises its :class:`~loopline.codec.errors.CodecError`.
"""

from __future__ import annotations

import struct
from typing import Any

from loopline.codec.checks import MAX_ID_BYTES, MAX_TIME_MS, MIN_TIME_MS
from loopline.codec.framing import HEADER_SIZE, Codec
from loopline.codec.varint import read_long

__all__ = ["OutcomeReader"]

_FLOAT = struct.Struct("<f")
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


class OutcomeReader:
    """Reads framed ``Outcome`` records into dicts holding at least the fields the drift agent uses.

    Args:
        codec: the outcome codec (its header is the fast path's; it decodes everything else).
    """

    FIELDS = ("event_id", "event_time", "values", "model_name", "model_version", "shadow", "correct",
              "log_loss", "label_time")  # fmt: skip
    """The fields of a record read on the fast path (the codec's dict has all of them, and more)."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec

    def read(self, data: bytes) -> dict[str, Any]:
        """The record's fields.

        Raises:
            CodecError: the codec refuses the record.
        """
        fields = self._fast(data)
        return fields if fields is not None else self.codec.decode(data)

    def _fast(self, data: bytes) -> dict[str, Any] | None:
        """The fields of a record in the current schema and one-block arrays that the codec would accept, else None."""
        if data[:HEADER_SIZE] != self.codec.header:
            return None
        try:
            event_id, pos = _string(data, HEADER_SIZE)
            event_time, pos = _long(data, pos)
            _, pos = _string(data, pos)  # entity_id
            values, pos = _floats(data, pos)
            model_name, pos = _string(data, pos)
            model_version, pos = _long(data, pos)
            shadow, pos = _boolean(data, pos)
            _, pos = _floats(data, pos)  # scores
            _, pos = _string(data, pos)  # predicted_class
            _, pos = _string(data, pos)  # label
            label_time, pos = _long(data, pos)
            _, pos = _long(data, pos)  # prediction_delay_ms
            _, pos = _long(data, pos)  # label_delay_ms
            correct, pos = _boolean(data, pos)
            (log_loss,) = _FLOAT.unpack_from(data, pos)
            pos += 8  # log_loss, label_rate
        except (IndexError, ValueError, struct.error):
            return None
        if pos != len(data) or not 0 < len(event_id.encode()) <= MAX_ID_BYTES:
            return None
        if not (MIN_TIME_MS <= event_time <= MAX_TIME_MS and MIN_TIME_MS <= label_time <= MAX_TIME_MS):
            return None
        if not _INT_MIN <= model_version <= _INT_MAX:
            return None
        return {"event_id": event_id, "event_time": event_time, "values": values, "model_name": model_name,
                "model_version": model_version, "shadow": shadow, "correct": correct, "log_loss": log_loss,
                "label_time": label_time}  # fmt: skip


def _long(data: bytes, pos: int) -> tuple[int, int]:
    value, end = read_long(data, pos)
    if end - pos > 10 or not _LONG_MIN <= value <= _LONG_MAX:
        raise ValueError("not an Avro long")
    return value, end


def _string(data: bytes, pos: int) -> tuple[str, int]:
    size, pos = _long(data, pos)
    end = pos + size
    if size < 0 or end > len(data):
        raise ValueError("not an Avro string")
    return data[pos:end].decode(), end  # a UnicodeDecodeError is a ValueError


def _boolean(data: bytes, pos: int) -> tuple[bool, int]:
    byte = data[pos]
    if byte > 1:
        raise ValueError("not an Avro boolean")
    return byte == 1, pos + 1


def _floats(data: bytes, pos: int) -> tuple[list[float], int]:
    """An array of floats written as one block (or none, when empty)."""
    count, pos = _long(data, pos)
    if count == 0:
        return [], pos
    end = pos + 4 * count
    if count < 0 or end >= len(data) or data[end] != 0:
        raise ValueError("not an array of floats in one block")
    return list(struct.unpack_from(f"<{count}f", data, pos)), end + 1
