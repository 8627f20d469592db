"""Dead letters: what an agent could not process, why, and where it came from."""

from __future__ import annotations

from streams.codec import Codec
from streams.records import Produced, SourceRecord, Topic

__all__ = ["DeadLetters"]


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

    def add(self, out: Produced, source: SourceRecord, reason: str, error: str) -> None:
        """Route the dead letter of ``source`` to dead-letters in a batch output, with its reason."""
        out.send(Topic.DEAD_LETTERS, *self.encode(source, reason, error))
        out.dead_reasons.append(reason)
