"""Dead letters: what an agent could not process, why, and where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from streams.codec import Codec

__all__ = ["DeadLetters", "HasDeadLetters", "SourceRecord"]


@dataclass(frozen=True)
class SourceRecord:
    """A consumed Kafka record, as the agents' cores see it."""

    key: bytes | None
    value: bytes
    topic: str
    partition: int
    offset: int
    timestamp_ms: int


class HasDeadLetters(Protocol):
    """A core's batch output: the dead letters it made and the reason of each."""

    dead_letters: list[tuple[bytes, bytes]]
    dead_reasons: list[str]


class DeadLetters:
    """Encodes dead letters of one agent (key: the source topic)."""

    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.codec = Codec.load("dead_letter")

    def encode(self, source: SourceRecord, reason: str, error: str) -> tuple[bytes, bytes]:
        """The dead letter of ``source`` as a Kafka (key, value).

        Its event_id is ``topic/partition/offset`` and its event time the source record's
        timestamp, so that a re-delivered source record makes the same dead letter.
        """
        record = {
            "event_id": f"{source.topic}/{source.partition}/{source.offset}",
            "event_time": source.timestamp_ms,
            "agent": self.agent,
            "reason": reason,
            "error": error,
            "source_topic": source.topic,
            "source_partition": source.partition,
            "source_offset": source.offset,
            "key": source.key,
            "value": source.value,
        }
        return source.topic.encode(), self.codec.encode(record)

    def add(self, out: HasDeadLetters, source: SourceRecord, reason: str, error: str) -> None:
        """Add the dead letter of ``source`` and its reason to a batch output."""
        out.dead_letters.append(self.encode(source, reason, error))
        out.dead_reasons.append(reason)
