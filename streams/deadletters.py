"""Dead letters: what an agent could not process, why, and where it came from.

A dead letter must always fit in its topic, or the record it reports stops the worker that can't
send it: so it keeps a bounded prefix of the source record's value (and key), and says in its
error text how long the whole was and its sha256, so that the original can be found and checked
on the source topic. The size and digest travel in the text rather than in new schema fields: a
new field changes the writer schema's fingerprint, which readers of the current schema (and the
``dead_letters`` table) do not know, while the text reaches every reader as it is.
"""

from __future__ import annotations

import hashlib

from loopline.codec import Codec
from loopline.codec.checks import clamp_time
from loopline.records import Produced, SourceRecord, Topic

__all__ = ["KEY_PREFIX_BYTES", "MAX_ERROR_CHARS", "VALUE_PREFIX_BYTES", "DeadLetters"]

VALUE_PREFIX_BYTES = 64 * 1024
"""Most bytes of the source record's value a dead letter keeps."""
KEY_PREFIX_BYTES = 1024
"""Most bytes of the source record's key a dead letter keeps."""
MAX_ERROR_CHARS = 4096
"""Longest error text (before the notes on cut payloads)."""


class DeadLetters:
    """Encodes dead letters of one agent (key: the source topic)."""

    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.codec = Codec.load("dead_letter")

    def encode(self, source: SourceRecord, reason: str, error: str) -> tuple[bytes, bytes]:
        """The dead letter of ``source`` as a Kafka (key, value), never much larger than 70 KB.

        Its event_id is ``topic/partition/offset`` and its event time the source record's
        timestamp (moved into the years ClickHouse stores), so that a re-delivered source record
        makes the same dead letter.
        """
        if len(error) > MAX_ERROR_CHARS:
            error = error[:MAX_ERROR_CHARS] + "…"
        value, value_note = _prefix(source.value, VALUE_PREFIX_BYTES, "value")
        key, key_note = _prefix(source.key, KEY_PREFIX_BYTES, "key")
        record = {
            "event_id": f"{source.topic}/{source.partition}/{source.offset}",
            "event_time": clamp_time(source.timestamp_ms),
            "agent": self.agent,
            "reason": reason,
            "error": error + key_note + value_note,
            "source_topic": source.topic,
            "source_partition": source.partition,
            "source_offset": source.offset,
            "key": key,
            "value": value,
        }
        return source.topic.encode(), self.codec.encode(record)

    def add(self, out: Produced, source: SourceRecord, reason: str, error: str) -> None:
        """Route the dead letter of ``source`` to dead-letters in a batch output, with its reason."""
        out.send(Topic.DEAD_LETTERS, *self.encode(source, reason, error), source=source)
        out.dead_reasons.append(reason)


def _prefix(data: bytes | None, limit: int, what: str) -> tuple[bytes | None, str]:
    """``data`` cut to ``limit`` bytes, and a note on what was cut (empty when nothing was)."""
    if data is None or len(data) <= limit:
        return data, ""
    digest = hashlib.sha256(data).hexdigest()
    return data[:limit], f" [{what}: {len(data)} bytes, sha256 {digest}; the first {limit} kept]"
