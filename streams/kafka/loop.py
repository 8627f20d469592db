"""The one batch loop every agent runs: a micro-batch in, the agent's core, its outputs and offsets committed.

An agent is a broker-free core (``process``: records in, a :class:`Produced` out) plus a few lines
of wiring; this loop does the rest, the same for every agent:

1. take a micro-batch from the source (up to ``max_batch`` records, ``max_wait_s`` after the first);
2. call the core; an exception there dead-letters the batch's records with the cause, it never
   ends the worker;
3. commit the outputs and the input offsets (one Kafka transaction, by default; one commit may
   hold several batches while there is a backlog, see :class:`BatchLoop`); when the commit is aborted (the worker lost its partitions, the broker failed the transaction), the source
   reads the batch again from the committed offsets, with the agent's state for those partitions
   rebuilt;
4. count the batch in the metrics.

Faust's per-record stream path is not used: it costs about 110 µs a record (9k records/s for a
consume-and-ack loop here), while this loop runs on librdkafka's batch calls; see
docs/benchmarks.md for the figures. The loop runs in a thread of the Faust worker (one per loop).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Protocol

from confluent_kafka import TopicPartition

from streams.deadletters import DeadLetters
from streams.kafka.output import KafkaOutput
from streams.kafka.retry import Stopped
from streams.kafka.source import KafkaSource, Partition
from streams.metrics import BATCH_SIZE, DEAD_LETTERS, EVENTS_IN
from streams.records import KeyValue, Produced, SourceRecord, Topic
from streams.settings import KafkaSettings

__all__ = ["BatchLoop", "Output", "Source", "kafka_loop", "next_offsets"]

log = logging.getLogger(__name__)


class Source(Protocol):
    """Where batches come from (:class:`KafkaSource`, or ``streams.kafka.testing.MemorySource``)."""

    before_revoke: Callable[[], None] | None
    """Called before partitions are taken from this worker (set by the loop)."""

    def take(self, max_records: int, max_wait_s: float) -> list[SourceRecord]: ...

    def rewind(self) -> None: ...

    def close(self) -> None: ...


class Output(Protocol):
    """Where a batch's outputs and offsets go (:class:`KafkaOutput`, or ``MemoryOutput``)."""

    def write(self, records: dict[Topic, list[KeyValue]]) -> None: ...

    def commit(self, offsets: list[TopicPartition], stop: threading.Event) -> bool: ...

    def close(self) -> None: ...


def next_offsets(records: Sequence[SourceRecord]) -> dict[Partition, tuple[int, str]]:
    """Per input partition, the offset after the batch's last record of it (no metadata)."""
    ends: dict[Partition, int] = {}
    for record in records:
        tp = (record.topic, record.partition)
        if record.offset >= ends.get(tp, -1):
            ends[tp] = record.offset + 1
    return {tp: (offset, "") for tp, offset in ends.items()}


class BatchLoop:
    """Runs ``process`` over micro-batches from ``source`` and commits what it returns to ``output``.

    One commit (a transaction) holds one batch, or several while a backlog lasts: it is made once a
    batch comes back smaller than ``max_batch`` (the source is caught up, so waiting would only add
    latency) or ``commit_interval_s`` after the commit's first batch (each transaction costs the
    broker some milliseconds, which a backlog should not pay per batch). Before partitions are
    revoked, the open commit is made, so a new owner never reads a batch whose outputs are in flight.

    Args:
        agent: the agent's name, for logs and metrics.
        process: the core: a batch of records in, its outputs out.
        ready: whether the core can take a batch now (no batch is read while it can't).
        observe: records the agent's own metrics of a committed batch.
    """

    def __init__(
        self,
        agent: str,
        source: Source,
        output: Output,
        process: Callable[[list[SourceRecord]], Produced],
        max_batch: int,
        max_wait_s: float,
        ready: Callable[[], bool] = lambda: True,
        observe: Callable[[Produced], None] | None = None,
        commit_interval_s: float = 0.1,
    ) -> None:
        self.agent, self.source, self.output, self.process = agent, source, output, process
        self.max_batch, self.max_wait_s, self.ready, self.observe = max_batch, max_wait_s, ready, observe
        self.commit_interval_s = commit_interval_s
        self.pending: list[tuple[int, Produced]] = []  # (records read, outputs) of the batches in the open commit
        self.offsets: dict[Partition, tuple[int, str]] = {}
        self.opened = 0.0
        source.before_revoke = self._before_revoke

    def run(self, stop: threading.Event) -> None:
        """Batches until ``stop`` is set; then the open commit is made, and the source and output closed."""
        try:
            while not stop.is_set():
                if not self.ready():
                    stop.wait(0.05)
                    continue
                records = self.source.take(self.max_batch, self.max_wait_s)
                if records:
                    self.add(records)
                due = time.monotonic() - self.opened >= self.commit_interval_s
                if self.pending and (len(records) < self.max_batch or due):
                    self.commit(stop)
            if self.pending:
                self.commit(stop)
        except Stopped:
            log.info("%s stopped with a commit open; its batches will be read again", self.agent)
        finally:
            self.output.close()
            self.source.close()

    def step(self, records: list[SourceRecord], stop: threading.Event) -> bool:
        """Process and commit one batch; False when the commit was aborted and the batch is to be read again."""
        self.add(records)
        return self.commit(stop)

    def add(self, records: list[SourceRecord]) -> None:
        """Process one batch and write its outputs into the open commit."""
        out = self._process(records)
        if not self.pending:
            self.opened = time.monotonic()
        self.output.write(out.records)
        self.offsets.update(out.offsets if out.offsets is not None else next_offsets(records))
        self.pending.append((len(records), out))

    def commit(self, stop: threading.Event) -> bool:
        """Commit the open batches with their input offsets; when aborted, read them again."""
        if not self._commit(stop):
            self.source.rewind()
            return False
        return True

    def _commit(self, stop: threading.Event) -> bool:
        partitions = [TopicPartition(t, p, offset, metadata=meta) for (t, p), (offset, meta) in self.offsets.items()]
        pending, self.pending, self.offsets = self.pending, [], {}
        if not self.output.commit(partitions, stop):
            return False
        for size, out in pending:
            EVENTS_IN.labels(self.agent).inc(size)
            BATCH_SIZE.labels(self.agent).observe(size)
            for reason, count in Counter(out.dead_reasons).items():
                DEAD_LETTERS.labels(self.agent, reason).inc(count)
            if self.observe is not None:
                self.observe(out)
        return True

    def _before_revoke(self) -> None:
        """Partitions are about to move: what was read from them is committed now, or aborted."""
        if self.pending:
            self._commit(threading.Event())

    def _process(self, records: list[SourceRecord]) -> Produced:
        try:
            return self.process(records)
        except Stopped:
            raise
        except Exception as exc:  # a bug must not lose the batch or stop the worker: dead-letter it with the cause
            log.exception("%s: a batch of %d records failed", self.agent, len(records))
            out = Produced()
            dead = DeadLetters(self.agent)
            for record in records:
                dead.add(out, record, "internal-error", repr(exc))
            return out


def kafka_loop(
    kafka: KafkaSettings,
    agent: str,
    topics: Sequence[Topic],
    process: Callable[[list[SourceRecord]], Produced],
    max_batch: int,
    max_wait_s: float,
    *,
    group: str | None = None,
    on_assign: Callable[[dict[Partition, tuple[int, str]]], None] | None = None,
    on_revoke: Callable[[list[Partition]], None] | None = None,
    ready: Callable[[], bool] = lambda: True,
    observe: Callable[[Produced], None] | None = None,
) -> BatchLoop:
    """A :class:`BatchLoop` on Kafka: ``topics`` read in the group ``<prefix><group or agent>``."""
    name = group or agent
    source = KafkaSource(kafka, [kafka.topic(t) for t in topics], f"{kafka.topic_prefix}{name}", on_assign, on_revoke)
    output = KafkaOutput(kafka, source, name)
    return BatchLoop(
        agent, source, output, process, max_batch, max_wait_s, ready, observe, kafka.commit_interval_ms / 1000
    )
