"""One event held by the join: its parts as they came, which outcomes were sent, and its stored layout.

An :class:`Entry` is the value of ``e<event_id>`` in the join's state and one record of its
changelog: :func:`encode_entry` and :func:`decode_entry` are the only way it is written and read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from loopline.records import SourceRecord

__all__ = ["ENTRY_OVERHEAD", "SERVING", "SHADOW", "Entry", "decode_entry", "encode_entry", "entry_deadline"]

SERVING, SHADOW = 1, 2  # bits of Entry.sent
ENTRY_FORMAT = 1
ENTRY_OVERHEAD = 64  # bytes of an encoded entry besides its parts and event_id
_HEAD = struct.Struct(">BqB")  # format, deadline, sent
_LENGTH = struct.Struct(">i")  # -1: absent
_LABEL = struct.Struct(">qq")  # the label record's offset and timestamp


@dataclass(eq=False)
class Entry:
    """Everything held of one event_id: its parts as they came (Avro bytes) and which outcomes were sent."""

    deadline_ms: int
    features: bytes | None = None
    prediction: bytes | None = None
    shadow: bytes | None = None
    label: SourceRecord | None = None
    """The label record as it came (it is dead-lettered itself when not one of the version's classes)."""
    sent: int = 0
    """SERVING | SHADOW: the outcomes sent (or found impossible: an unknown label)."""

    @property
    def size(self) -> int:
        parts = (self.features, self.prediction, self.shadow, self.label.value if self.label else None)
        return (
            ENTRY_OVERHEAD
            + sum(len(part) for part in parts if part)
            + len(self.label.key or b"" if self.label else b"")
        )

    @property
    def done(self) -> bool:
        """Every prediction held, the serving one included, has its outcome sent."""
        held = (SERVING if self.prediction is not None else 0) | (SHADOW if self.shadow is not None else 0)
        return bool(self.sent & SERVING) and self.sent & held == held


def encode_entry(entry: Entry) -> bytes:
    """An entry as stored: ``>BqB`` (format 1, deadline ms, sent bits), then the features, serving
    prediction, shadow prediction and label values, each as a ``>i`` length (-1: absent) and its
    bytes, then for a label its offset and timestamp (``>qq``) and key (length and bytes)."""
    parts = [_HEAD.pack(ENTRY_FORMAT, entry.deadline_ms, entry.sent)]
    label = entry.label
    for value in (
        entry.features,
        entry.prediction,
        entry.shadow,
        label.value if label else None,
        label.key if label else None,
    ):
        parts += [_LENGTH.pack(-1)] if value is None else [_LENGTH.pack(len(value)), value]
    if label is not None:
        parts.append(_LABEL.pack(label.offset, label.timestamp_ms))
    return b"".join(parts)


def decode_entry(data: bytes, labels: str, partition: int) -> Entry:
    """The entry stored as ``data`` (see :func:`encode_entry`); its label record is on ``labels``[``partition``]."""
    fmt, deadline, sent = _HEAD.unpack_from(data)
    if fmt != ENTRY_FORMAT:
        raise ValueError(f"join entry format {fmt} is not {ENTRY_FORMAT}")
    at = _HEAD.size
    values: list[bytes | None] = []
    for _ in range(5):
        (length,) = _LENGTH.unpack_from(data, at)
        at += _LENGTH.size
        values.append(None if length < 0 else data[at : at + length])
        at += max(length, 0)
    features, prediction, shadow, label_value, label_key = values
    label = None
    if label_value is not None:
        offset, timestamp = _LABEL.unpack_from(data, at)
        label = SourceRecord(label_key, label_value, labels, partition, offset, timestamp)
    return Entry(deadline, features, prediction, shadow, label, sent)


def entry_deadline(data: bytes) -> int:
    """The deadline of the entry stored as ``data``, read without decoding the rest."""
    deadline: int = _HEAD.unpack_from(data)[1]
    return deadline
