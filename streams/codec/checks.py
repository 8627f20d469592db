"""What every decoded record must hold beyond its schema: a usable event_id and storable times.

Avro accepts an empty string and any long, but an empty event_id collapses distinct events into
one row (ClickHouse's tables are keyed by it) and a time ClickHouse's ``DateTime64(3)`` can't
hold breaks the queries that read it later. So the codecs refuse both where a record is decoded,
and the first agent that reads such a record dead-letters it instead of serving or storing it.
"""

from __future__ import annotations

from loopline.codec.errors import CodecError

__all__ = ["MAX_ID_BYTES", "MAX_TIME_MS", "MIN_TIME_MS", "check_id", "check_time", "clamp_time"]

MIN_TIME_MS = -2_208_988_800_000
"""1900-01-01T00:00:00Z, the first instant ``DateTime64(3)`` stores."""
MAX_TIME_MS = 10_413_791_999_999
"""2299-12-31T23:59:59.999Z, the last instant ``DateTime64(3)`` stores."""
MAX_ID_BYTES = 1024
"""Longest event_id (UTF-8): ids are Kafka keys and ClickHouse sorting keys, not payloads."""


def check_id(event_id: str, size: int | None = None) -> None:
    """Refuse an empty or overlong event_id (``size``: its UTF-8 length, when the caller has it).

    Raises:
        CodecError: reason ``invalid-id``.
    """
    size = len(event_id.encode()) if size is None else size
    if size == 0:
        raise CodecError("invalid-id", "event_id is empty")
    if size > MAX_ID_BYTES:
        raise CodecError("invalid-id", f"event_id is {size} bytes long, over {MAX_ID_BYTES}")


def check_time(name: str, value: int) -> None:
    """Refuse a millisecond timestamp outside the years 1900-2299.

    Raises:
        CodecError: reason ``invalid-time``.
    """
    if not MIN_TIME_MS <= value <= MAX_TIME_MS:
        raise CodecError("invalid-time", f"{name} {value} ms is outside the years 1900-2299 that ClickHouse stores")


def clamp_time(value: int) -> int:
    """``value`` moved into the storable range (for times loopline derives, e.g. a Kafka timestamp)."""
    return min(max(value, MIN_TIME_MS), MAX_TIME_MS)
