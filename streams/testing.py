"""In-memory test doubles of the batch loop's source, output and changelog and of a sink: an agent's
wiring, tested without a broker or a store.

A :class:`MemorySource` serves records given up front; a :class:`MemoryOutput` keeps what was
committed, and can be told to abort chosen commits or to refuse chosen records, so that a test sees
the batch read again from the committed offsets, as it would be on Kafka. A new source made with
the committed offsets of an old one is a restarted worker. A :class:`MemoryChangelog` keeps the
state changes a :class:`MemoryOutput` committed; a :class:`MemorySink` the rows a sink agent wrote.

Example:
    One batch of a relay's loop::

        source = MemorySource(records)
        output = MemoryOutput(source)
        loop = BatchLoop("relay", source, output, relay, max_batch=100, max_wait_s=0)
        loop.step(loop.take(), threading.Event())
        output.to(Topic.PREDICTIONS)  # what the batch committed
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from confluent_kafka import TopicPartition

from loopline.kafka.output import Refused
from loopline.kafka.source import Partition
from loopline.records import KeyValue, SourceRecord, Topic
from loopline.sink.tables import Row, Table
from loopline.state.store import Changes

__all__ = ["MemoryChangelog", "MemoryOutput", "MemorySink", "MemorySource"]


class MemorySource:
    """Serves ``records`` in their order, ``max_records`` at a time (``max_wait_s`` is not waited).

    Its partitions are assigned on the first ``take``, from ``committed`` (offset and metadata per
    partition) as a consumer group would.
    """

    def __init__(
        self,
        records: Sequence[SourceRecord],
        on_assign: Callable[[dict[Partition, tuple[int, str]]], None] | None = None,
        on_revoke: Callable[[list[Partition], bool], None] | None = None,
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

    def take(self, max_records: int, max_wait_s: float, first_wait_s: float | None = None) -> list[SourceRecord]:
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
            self.on_revoke(self.partitions, False)
        self.position = {tp: offset for tp, (offset, _) in self.committed.items()}
        if self.on_assign is not None:
            self.on_assign({tp: self.committed.get(tp, (-1, "")) for tp in self.partitions})

    def backlog(self) -> int:
        """Records not taken yet."""
        return sum(r.offset >= self.position.get((r.topic, r.partition), 0) for r in self.records)

    @property
    def drained(self) -> bool:
        """Whether every record was taken."""
        return all(r.offset < self.position.get((r.topic, r.partition), 0) for r in self.records)

    def close(self) -> None:
        self.closed = True


class MemoryOutput:
    """Keeps what each commit sent; the commits numbered in ``abort`` (from 0) are aborted instead.

    A call with ``close=False`` is kept in an open transaction, which the next closing call
    commits at that call's offsets, and an aborted or refused call drops.

    Args:
        refuse: says why a record (topic, key, value) can never be sent, or None when it can: a
            commit holding such records commits nothing and raises :class:`Refused`.
        changelog: where the state changes of committed batches go (one of the output's own by default).
    """

    def __init__(
        self,
        source: MemorySource,
        abort: Sequence[int] = (),
        refuse: Callable[[Topic, bytes, bytes], str | None] | None = None,
        changelog: MemoryChangelog | None = None,
    ) -> None:
        self.source = source
        self.abort = set(abort)
        self.refuse = refuse
        self.attempts = 0
        self.records: dict[Topic, list[KeyValue]] = {}
        self.changelog = changelog if changelog is not None else MemoryChangelog()
        self.closed = False
        self.sent: list[tuple[dict[Topic, list[KeyValue]], dict[int, Changes]]] = []  # the open transaction
        self.transactions = 0  # committed

    def commit(
        self,
        records: dict[Topic, list[KeyValue]],
        offsets: list[TopicPartition],
        stop: threading.Event,
        changes: dict[int, Changes] | None = None,
        close: bool = True,
    ) -> bool:
        attempt, self.attempts = self.attempts, self.attempts + 1
        if attempt in self.abort:
            self.sent = []
            return False
        if self.refuse is not None:
            refused = [
                (topic, index, error)
                for topic, pairs in records.items()
                for index, (key, value) in enumerate(pairs)
                if (error := self.refuse(topic, key, value)) is not None
            ]
            if refused:
                self.sent = []
                raise Refused(refused)
        self.sent.append((records, changes or {}))
        if not close:
            return True
        self.mark(offsets, stop)
        for sent, changed in self.sent:
            for topic, pairs in sent.items():
                self.records.setdefault(topic, []).extend(pairs)
            for partition, keyed in changed.items():
                self.changelog.log.setdefault(partition, []).extend(keyed.items())
        self.sent = []
        self.transactions += 1
        return True

    def abandon(self, stop: threading.Event) -> None:
        """Abort the open transaction."""
        self.sent = []

    def mark(self, offsets: list[TopicPartition], stop: threading.Event) -> None:
        """Commit ``offsets`` (with their metadata) alone."""
        for tp in offsets:
            self.source.committed[(tp.topic, tp.partition)] = (tp.offset, tp.metadata or "")

    def to(self, topic: Topic) -> list[KeyValue]:
        """What was committed to ``topic``."""
        return self.records.get(topic, [])

    def close(self) -> None:
        self.closed = True


class MemoryChangelog:
    """A changelog kept in memory: what a :class:`MemoryOutput` committed, read back by a restore."""

    topic = "changelog"

    def __init__(self) -> None:
        self.log: dict[int, list[tuple[bytes, bytes | None]]] = {}

    def read(self, partition: int, start: int | None, apply: Callable[[Changes], None]) -> int:
        records = self.log.get(partition, [])[start or 0 :]
        if records:
            apply(dict(records))
        return len(records)

    def end(self, partition: int) -> int:
        return len(self.log.get(partition, []))


class MemorySink:
    """A :class:`~loopline.sink.base.Sink` kept in memory: the rows each successful flush wrote, by table.

    Args:
        failures: how many flushes fail (raise ``ConnectionError``, keeping their rows) before they succeed.
    """

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.flushes = 0
        """Flushes tried, failed ones included."""
        self.pending: dict[str, list[Row]] = {}
        self.rows: dict[str, list[Row]] = {}
        """Table name → the rows written, in the order they were."""

    def add(self, table: Table, rows: Sequence[Row]) -> None:
        """Buffer ``rows`` of ``table`` until the next flush."""
        self.pending.setdefault(table.table, []).extend(rows)

    def flush(self) -> None:
        """Write the buffered rows, unless this is one of the first ``failures`` flushes.

        Raises:
            ConnectionError: a flush told to fail.
        """
        self.flushes += 1
        if self.flushes <= self.failures:
            raise ConnectionError(f"flush {self.flushes} of the {self.failures} told to fail")
        for name, rows in self.pending.items():
            self.rows.setdefault(name, []).extend(rows)
        self.pending = {}
