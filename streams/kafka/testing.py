"""In-memory test doubles of the batch loop's source and output: an agent's wiring, tested without a broker.

A :class:`MemorySource` serves records given up front; a :class:`MemoryOutput` keeps what was
committed, and can be told to abort chosen commits or to refuse chosen records, so that a test sees
the batch read again from the committed offsets, as it would be on Kafka. A new source made with
the committed offsets of an old one is a restarted worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from confluent_kafka import TopicPartition

from streams.kafka.output import Refused
from streams.kafka.source import Partition
from streams.records import KeyValue, SourceRecord, Topic

__all__ = ["MemoryOutput", "MemorySource"]


class MemorySource:
    """Serves ``records`` in their order, ``max_records`` at a time (``max_wait_s`` is not waited).

    Its partitions are assigned on the first ``take``, from ``committed`` (offset and metadata per
    partition) as a consumer group would.
    """

    def __init__(
        self,
        records: Sequence[SourceRecord],
        on_assign: Callable[[dict[Partition, tuple[int, str]]], None] | None = None,
        on_revoke: Callable[[list[Partition]], None] | None = None,
        committed: dict[Partition, tuple[int, str]] | None = None,
    ) -> None:
        self.records = list(records)
        self.on_assign, self.on_revoke = on_assign, on_revoke
        self.committed: dict[Partition, tuple[int, str]] = dict(committed or {})
        self.position: dict[Partition, int] = {tp: offset for tp, (offset, _) in self.committed.items()}
        self.assigned = False
        self.closed = False

    @property
    def partitions(self) -> list[Partition]:
        return sorted({(r.topic, r.partition) for r in self.records})

    def take(self, max_records: int, max_wait_s: float) -> list[SourceRecord]:
        if not self.assigned:
            self.assigned = True
            if self.on_assign is not None:
                self.on_assign({tp: self.committed.get(tp, (-1, "")) for tp in self.partitions})
        batch: list[SourceRecord] = []
        for record in self.records:
            tp = (record.topic, record.partition)
            if record.offset >= self.position.get(tp, 0) and len(batch) < max_records:
                batch.append(record)
        for record in batch:
            self.position[(record.topic, record.partition)] = record.offset + 1
        return batch

    def rewind(self) -> None:
        if self.on_revoke is not None:
            self.on_revoke(self.partitions)
        self.position = {tp: offset for tp, (offset, _) in self.committed.items()}
        if self.on_assign is not None:
            self.on_assign({tp: self.committed.get(tp, (-1, "")) for tp in self.partitions})

    @property
    def drained(self) -> bool:
        """Whether every record was taken."""
        return all(r.offset < self.position.get((r.topic, r.partition), 0) for r in self.records)

    def close(self) -> None:
        self.closed = True


class MemoryOutput:
    """Keeps what each commit sent; the commits numbered in ``abort`` (from 0) are aborted instead.

    Args:
        refuse: says why a record (topic, key, value) can never be sent, or None when it can: a
            commit holding such records commits nothing and raises :class:`Refused`.
    """

    def __init__(
        self,
        source: MemorySource,
        abort: Sequence[int] = (),
        refuse: Callable[[Topic, bytes, bytes], str | None] | None = None,
    ) -> None:
        self.source = source
        self.abort = set(abort)
        self.refuse = refuse
        self.attempts = 0
        self.records: dict[Topic, list[KeyValue]] = {}
        self.closed = False

    def commit(
        self, records: dict[Topic, list[KeyValue]], offsets: list[TopicPartition], stop: threading.Event
    ) -> bool:
        attempt, self.attempts = self.attempts, self.attempts + 1
        if attempt in self.abort:
            return False
        if self.refuse is not None:
            refused = [
                (topic, index, error)
                for topic, pairs in records.items()
                for index, (key, value) in enumerate(pairs)
                if (error := self.refuse(topic, key, value)) is not None
            ]
            if refused:
                raise Refused(refused)
        self.mark(offsets, stop)
        for topic, pairs in records.items():
            self.records.setdefault(topic, []).extend(pairs)
        return True

    def mark(self, offsets: list[TopicPartition], stop: threading.Event) -> None:
        """Commit ``offsets`` (with their metadata) alone."""
        for tp in offsets:
            self.source.committed[(tp.topic, tp.partition)] = (tp.offset, tp.metadata or "")

    def to(self, topic: Topic) -> list[KeyValue]:
        """What was committed to ``topic``."""
        return self.records.get(topic, [])

    def close(self) -> None:
        self.closed = True
