"""Micro-batches from a consumer group, committed only after their outputs are acknowledged.

Faust's stream path handles records one at a time (about 110 µs each here: 9k records/s for a
consume-and-ack loop, see docs/benchmarks.md), which caps a batched agent far below what its core
can do. The batch agents therefore read their input partitions with aiokafka directly, inside the
Faust worker: ``getmany`` fills a batch up to ``max_batch`` records or ``max_wait_s`` after its
first record, and offsets are committed explicitly, batch by batch, after delivery. A crash or a
rebalance before the commit re-reads the batch (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, KafkaError

from streams.deadletters import SourceRecord
from streams.kafka.config import aiokafka_config
from streams.metrics import CONSUMER_LAG
from streams.settings import KafkaSettings

__all__ = ["BatchConsumer", "Outgoing", "deliver", "make_producer", "to_source"]

log = logging.getLogger(__name__)

Outgoing = tuple[str, bytes | None, bytes]


def make_producer(kafka: KafkaSettings) -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas and never reorders retried batches."""
    return AIOKafkaProducer(
        **aiokafka_config(kafka),
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        max_request_size=kafka.max_message_bytes,
    )


async def deliver(producer: AIOKafkaProducer, records: Sequence[Outgoing], max_backoff_s: float = 5.0) -> None:
    """Send ``records`` and return once the broker acknowledged every one.

    Failed sends are retried with backoff for as long as it takes: the agent holds its batch (and
    its offsets stay uncommitted) rather than move on without its outputs.
    """
    pending = list(records)
    backoff = 0.1
    while pending:
        futures = [await producer.send(topic, value, key=key) for topic, key, value in pending]
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = [record for record, result in zip(pending, results, strict=True) if isinstance(result, BaseException)]
        if failed:
            error = next(r for r in results if isinstance(r, BaseException))
            log.warning("%d of %d sends failed (%r); retrying in %.1fs", len(failed), len(pending), error, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)
        pending = failed


def to_source(record: ConsumerRecord[bytes, bytes]) -> SourceRecord:
    """The core's view of a consumed record."""
    return SourceRecord(
        record.key, record.value or b"", record.topic, record.partition, record.offset, record.timestamp
    )


class BatchConsumer:
    """Reads ``topics`` in the consumer group ``group_id`` as micro-batches of :class:`SourceRecord`.

    Partitions are assigned by range, so that a worker gets the same partition numbers of every
    topic it reads: co-partitioned topics (keyed alike, with as many partitions) meet in one worker.

    Args:
        topics: one topic name or several.
        max_batch: most records in a batch.
        max_wait_s: longest time a batch waits to fill after its first record arrived.
        listener: told of partitions assigned to and revoked from this worker.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: str | Sequence[str],
        group_id: str,
        max_batch: int,
        max_wait_s: float,
        listener: ConsumerRebalanceListener | None = None,
    ) -> None:
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.group_id = group_id
        self.consumer = AIOKafkaConsumer(
            **aiokafka_config(kafka),
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        self.consumer.subscribe([topics] if isinstance(topics, str) else list(topics), listener=listener)

    async def __aenter__(self) -> BatchConsumer:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def batches(self) -> AsyncIterator[list[SourceRecord]]:
        """Batches forever; the caller commits each with :meth:`commit` once it is done with it."""
        while True:
            records = await self._take(self.max_batch, timeout_ms=1000)
            if not records:
                continue
            deadline = time.monotonic() + self.max_wait_s
            while len(records) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                records += await self._take(self.max_batch - len(records), timeout_ms=int(left * 1000))
            await self._report_lag()
            yield [to_source(record) for record in records]

    async def _report_lag(self) -> None:
        """Set the lag gauge of every assigned partition whose high watermark is known."""
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                lag = highwater - await self.consumer.position(tp)
                CONSUMER_LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(lag)

    async def _take(self, count: int, timeout_ms: int) -> list[ConsumerRecord[bytes, bytes]]:
        fetched = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=count)
        return [record for records in fetched.values() for record in records]

    async def commit(self, batch: Sequence[SourceRecord]) -> None:
        """Commit the offsets after ``batch``. A partition lost to a rebalance is left to its new owner."""
        ends: dict[TopicPartition, int] = {}
        for record in batch:
            tp = TopicPartition(record.topic, record.partition)
            ends[tp] = max(ends.get(tp, 0), record.offset + 1)
        await self.commit_offsets({tp: (offset, "") for tp, offset in ends.items()})

    def owns(self, record: SourceRecord) -> bool:
        """Whether ``record``'s partition is still assigned to this worker."""
        return TopicPartition(record.topic, record.partition) in self.consumer.assignment()

    async def committed_metadata(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, str]:
        """The metadata committed with each partition's offset ("" where none was).

        aiokafka's public ``committed()`` leaves the metadata out, and confluent-kafka misreads empty
        metadata, so this asks the group coordinator the way ``committed()`` itself does.
        """
        answer = await self.consumer._coordinator.fetch_committed_offsets(list(partitions))
        return {tp: answer[tp].metadata or "" if tp in answer else "" for tp in partitions}

    async def commit_offsets(self, offsets: dict[TopicPartition, tuple[int, str]]) -> None:
        """Commit (offset, metadata) per partition, for the partitions this worker still owns."""
        owned = self.consumer.assignment()
        mine = {tp: offset for tp, offset in offsets.items() if tp in owned}
        if not mine:
            return
        try:
            await self.consumer.commit(mine)
        except (CommitFailedError, KafkaError) as exc:
            log.warning("commit of %d partitions failed (%r); their records will be read again", len(mine), exc)
