"""Micro-batches from a consumer group, on librdkafka, reading committed records only.

``take`` waits for a first record, then fills the batch with what librdkafka has fetched, up to
``max_records`` or ``max_wait_s`` after that first record came. A first record that was already
waiting when ``take`` was called came while the worker was busy with the previous batch: the wait
is shortened by the time spent there, so that under load a record waits for one batch, not for
one batch and then ``max_wait_s`` more. Partitions are assigned by range, so a
worker gets the same partition numbers of every topic it reads: co-partitioned topics (keyed
alike, with as many partitions) meet in one worker. Rebalance callbacks run inside ``take``, that
is between two batches, never while a batch's transaction is open.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from loopline.kafka.config import confluent_config
from loopline.kafka.noise import client_callbacks, client_log
from loopline.kafka.retry import until_answered
from loopline.metrics import CONSUMER_LAG
from loopline.records import SourceRecord
from loopline.settings import KafkaSettings

__all__ = ["KafkaSource", "Partition", "to_source"]

log = logging.getLogger(__name__)

Partition = tuple[str, int]
FIRST_RECORD_WAIT_S = 0.2  # how long one take() waits for a first record; the loop then checks for a stop
WAITING_S = 0.001  # a first record polled faster than this was waiting already


def to_source(message: Message) -> SourceRecord:
    """The core's view of a consumed record (a record, not an event: its topic, partition and offset are set)."""
    return SourceRecord(
        message.key(), message.value() or b"", message.topic(), message.partition(), message.offset(),  # type: ignore[arg-type]
        message.timestamp()[1],
    )  # fmt: skip


class KafkaSource:
    """Reads ``topics`` in the consumer group ``group_id`` as micro-batches of :class:`SourceRecord`.

    Args:
        on_assign: told of the partitions given to this worker, with each one's committed offset
            (negative where none was) and the metadata committed with it ("" where none was).
        on_revoke: told of the partitions taken from this worker, and whether they were lost (taken
            away before it could hand them back: another worker may have them already).
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Sequence[str],
        group_id: str,
        on_assign: Callable[[dict[Partition, tuple[int, str]]], None] | None = None,
        on_revoke: Callable[[list[Partition], bool], None] | None = None,
    ) -> None:
        self.group_id = group_id
        self.on_assign, self.on_revoke = on_assign, on_revoke
        self.rebalanced = False
        # The partitions owned, as the rebalance callbacks said: consumer.assignment() asks librdkafka's
        # group thread and waits for its answer (62 µs a call on a consumer draining a backlog here), too slow
        # for every batch.
        self.owned: set[TopicPartition] = set()
        self.consumer = Consumer(
            confluent_config(
                kafka,
                {
                    "group.id": group_id,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_committed",
                    "partition.assignment.strategy": "range",
                    "session.timeout.ms": kafka.session_timeout_ms,
                    "heartbeat.interval.ms": max(100, kafka.session_timeout_ms // 10),
                    "max.poll.interval.ms": kafka.max_poll_interval_ms,
                    "fetch.message.max.bytes": kafka.max_message_bytes,
                    **client_callbacks(),
                },
            )
        )
        self.consumer.subscribe(list(topics), on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost)
        self._lag_reported = 0.0
        self._returned = time.monotonic()  # when the last take returned

    def take(self, max_records: int, max_wait_s: float, first_wait_s: float | None = None) -> list[SourceRecord]:
        """The next micro-batch; empty when no record came within ``first_wait_s`` (a short wait by default)."""
        self.rebalanced = False
        called = time.monotonic()
        first = self.consumer.poll(FIRST_RECORD_WAIT_S if first_wait_s is None else first_wait_s)
        if first is None:
            self._returned = time.monotonic()
            self._report_lag()
            return []
        messages = [first]
        if max_records > 1:
            if time.monotonic() - called < WAITING_S:  # it came while the previous batch was processed
                max_wait_s = max(0.0, max_wait_s - (called - self._returned))
            messages += self.consumer.consume(max_records - 1, max_wait_s)
        self._returned = time.monotonic()
        new = tuple.__new__  # SourceRecord's own constructor costs a third more per record
        records = []
        for message in messages:
            error = message.error()
            if error is None:
                records.append(new(SourceRecord, (message.key(), message.value() or b"", message.topic(),
                                                  message.partition(), message.offset(), message.timestamp()[1])))  # fmt: skip
            else:
                client_log.warning("consumer of %s: %s", self.group_id, error.str())
        if self.rebalanced:  # a record read before its partition moved is its new owner's to read
            owned = {(tp.topic, tp.partition) for tp in self.owned}
            records = [r for r in records if (r.topic, r.partition) in owned]
        self._report_lag()
        return records

    def rewind(self) -> None:
        """Read every assigned partition again from its committed offset, with its state rebuilt.

        Called after a batch's commit was aborted: what the batch did is undone in Kafka, so the
        agent forgets it too (revoked and assigned again) and reads the same records once more.
        """
        assigned = self.consumer.assignment()
        if not assigned:
            return
        self._revoked(self.consumer, assigned)
        self.owned = {TopicPartition(tp.topic, tp.partition) for tp in assigned}  # still owned: only read again
        committed = until_answered(lambda: self.consumer.committed(assigned, timeout=30), "reading offsets", None)
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            try:
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
            except KafkaException as exc:  # taken away meanwhile: its new owner reads it
                log.info("not rewinding %s[%d]: %s", tp.topic, tp.partition, exc)
        if self.on_assign is not None:
            self.on_assign({(tp.topic, tp.partition): (tp.offset, tp.metadata or "") for tp in committed})

    def commit(self, offsets: list[TopicPartition]) -> None:
        """Commit ``offsets`` outside any transaction (at-least-once), waiting for the answer.

        Raises:
            KafkaException: the group did not take the commit (e.g. the partitions moved on).
        """
        self.consumer.commit(offsets=offsets, asynchronous=False)

    def close(self) -> None:
        """Leave the group, so that the partitions move to the other workers at once."""
        self.consumer.close()

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("%s: assigned %s", self.group_id, _names(partitions))
        self.rebalanced = True
        self.owned = {TopicPartition(tp.topic, tp.partition) for tp in partitions}  # range assignment: all of it
        if self.on_assign is not None and partitions:
            committed = until_answered(lambda: consumer.committed(partitions, timeout=30), "reading offsets", None)
            self.on_assign({(tp.topic, tp.partition): (tp.offset, tp.metadata or "") for tp in committed})

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition], lost: bool = False) -> None:
        log.info("%s: %s %s", self.group_id, "lost" if lost else "revoked", _names(partitions))
        self.rebalanced = True
        self.owned -= {TopicPartition(tp.topic, tp.partition) for tp in partitions}
        if self.on_revoke is not None and partitions:
            self.on_revoke([(tp.topic, tp.partition) for tp in partitions], lost)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._revoked(consumer, partitions, lost=True)

    def backlog(self) -> int:
        """Records not taken yet of the assigned partitions, as of the last fetch (uncommitted
        records of a transactional writer included)."""
        return sum(self._lags().values())

    def _lags(self) -> dict[TopicPartition, int]:
        lags = {}
        try:
            for tp in self.consumer.position(list(self.owned)):
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
                if high >= 0 and tp.offset >= 0:
                    lags[tp] = max(0, high - tp.offset)
                elif high == 0:  # fetched and empty: nothing to read before a first record gives a position
                    lags[tp] = 0
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._STATE:
                raise
        return lags

    def _report_lag(self) -> None:
        """Set the lag gauge of every assigned partition, at most once a second."""
        now = time.monotonic()
        if now - self._lag_reported < 1.0:
            return
        self._lag_reported = now
        for tp, lag in self._lags().items():
            CONSUMER_LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(lag)


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"
