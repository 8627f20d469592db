"""The one batch loop every agent runs: a micro-batch in, the agent's core, its outputs and offsets committed.

An agent is a broker-free core (``process``: records in, a :class:`Produced` out) plus a few lines
of wiring; this loop does the rest, the same for every agent:

1. take a micro-batch from the source (up to ``max_batch`` records, ``max_wait_s`` after the first);
2. call the core; an exception there dead-letters the batch's records with the cause, it never
   ends the worker;
3. commit the outputs and the input offsets (one Kafka transaction, by default); when the commit
   is aborted (the worker lost its partitions, the broker failed the transaction), the source
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

    def take(self, max_records: int, max_wait_s: float) -> list[SourceRecord]: ...

    def rewind(self) -> None: ...

    def close(self) -> None: ...


class Output(Protocol):
    """Where a batch's outputs and offsets go (:class:`KafkaOutput`, or ``MemoryOutput``)."""

    def commit(
        self, records: dict[Topic, list[KeyValue]], offsets: list[TopicPartition], stop: threading.Event
    ) -> bool: ...

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
    ) -> None:
        self.agent, self.source, self.output, self.process = agent, source, output, process
        self.max_batch, self.max_wait_s, self.ready, self.observe = max_batch, max_wait_s, ready, observe

    def run(self, stop: threading.Event) -> None:
        """Batches until ``stop`` is set; then the source and output are closed."""
        try:
            while not stop.is_set():
                if not self.ready():
                    stop.wait(0.05)
                    continue
                records = self.source.take(self.max_batch, self.max_wait_s)
                if records:
                    self.step(records, stop)
        except Stopped:
            log.info("%s stopped with a batch uncommitted; it will be read again", self.agent)
        finally:
            self.output.close()
            self.source.close()

    def step(self, records: list[SourceRecord], stop: threading.Event) -> bool:
        """Process and commit one batch; False when the commit was aborted and the batch is to be read again."""
        out = self._process(records)
        offsets = out.offsets if out.offsets is not None else next_offsets(records)
        partitions = [TopicPartition(t, p, offset, metadata=meta) for (t, p), (offset, meta) in offsets.items()]
        if not self.output.commit(out.records, partitions, stop):
            self.source.rewind()
            return False
        EVENTS_IN.labels(self.agent).inc(len(records))
        BATCH_SIZE.labels(self.agent).observe(len(records))
        for reason, count in Counter(out.dead_reasons).items():
            DEAD_LETTERS.labels(self.agent, reason).inc(count)
        if self.observe is not None:
            self.observe(out)
        return True

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
    return BatchLoop(agent, source, output, process, max_batch, max_wait_s, ready, observe)
