"""The records every agent reads and writes: the catalogue topics, a consumed record, a batch's outputs.

Broker-free vocabulary shared by the cores and the batch loop (``loopline.kafka.loop``): a core
reads :class:`SourceRecord` and returns a :class:`Produced` whose records each name the catalogue
:class:`Topic` they go to; the loop resolves the names and sends them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

__all__ = ["KeyValue", "Produced", "SourceRecord", "Topic"]

KeyValue = tuple[bytes, bytes]


class Topic(StrEnum):
    """The catalogue: every topic loopline reads or writes, by its name without the prefix."""

    FEATURES = "features"
    PREDICTIONS = "predictions"
    SHADOW_PREDICTIONS = "shadow-predictions"
    LABELS = "labels"
    OUTCOMES = "outcomes"
    DRIFT_EVENTS = "drift-events"
    RETRAIN_REQUESTS = "retrain-requests"
    MODEL_VERSIONS = "model-versions"
    DEAD_LETTERS = "dead-letters"
    JOIN_CHANGELOG = "join-changelog"
    DRIFT_CHANGELOG = "drift-changelog"
    GUARD_CHANGELOG = "guard-changelog"


class SourceRecord(NamedTuple):
    """A consumed Kafka record, as the agents' cores see it."""

    key: bytes | None
    value: bytes
    topic: str
    partition: int
    offset: int
    timestamp_ms: int


@dataclass
class Produced:
    """What a core made of one batch: records routed to catalogue topics, and why each dead letter is one.

    A record may name the input it was made from (its source): the batch loop dead-letters that
    input in its place when the record can't be sent (too large for the topic, refused by the
    broker). Each agent's batch output extends it with the figures its metrics need.
    """

    records: dict[Topic, list[KeyValue]] = field(default_factory=dict)
    """Catalogue topic → (key, value) records, in the order they were made."""
    dead_reasons: list[str] = field(default_factory=list)
    """The reason of each record routed to dead-letters."""
    offsets: dict[tuple[str, int], tuple[int, str]] | None = None
    """Where to commit each input partition, with commit metadata, instead of after the batch's
    last record (a core that still holds earlier records in memory says so here)."""
    sources: dict[Topic, list[SourceRecord | None]] = field(default_factory=dict)
    """Catalogue topic → the input each of its records was made from (None where not said)."""

    def send(self, topic: Topic, key: bytes, value: bytes, source: SourceRecord | None = None) -> None:
        """Route one record to ``topic``, made from the input ``source`` where given."""
        self.records.setdefault(topic, []).append((key, value))
        self.sources.setdefault(topic, []).append(source)

    def extend(self, topic: Topic, records: list[KeyValue], sources: list[SourceRecord | None] | None = None) -> None:
        """Route ``records`` to ``topic`` (with the input of each, where given)."""
        if records:
            self.records.setdefault(topic, []).extend(records)
            self.sources.setdefault(topic, []).extend(sources if sources is not None else [None] * len(records))

    def to(self, topic: Topic) -> list[KeyValue]:
        """The records routed to ``topic``."""
        return self.records.get(topic, [])

    def source_of(self, topic: Topic, index: int) -> SourceRecord | None:
        """The input the ``index``-th record of ``topic`` was made from, if known."""
        sources = self.sources.get(topic, [])
        return sources[index] if len(sources) == len(self.to(topic)) else None

    def absorb(self, other: Produced) -> None:
        """Append ``other``'s records (with their sources) and dead-letter reasons to this output."""
        for topic, pairs in other.records.items():
            self.extend(topic, pairs, [other.source_of(topic, i) for i in range(len(pairs))])
        self.dead_reasons += other.dead_reasons

    def clear(self) -> None:
        """Drop every record and dead-letter reason (the figures of a subclass stay)."""
        self.records, self.sources, self.dead_reasons = {}, {}, []

    @property
    def dead_letters(self) -> list[KeyValue]:
        return self.to(Topic.DEAD_LETTERS)

    def __len__(self) -> int:
        return sum(len(records) for records in self.records.values())
