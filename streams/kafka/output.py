"""A batch's outputs and its input offsets, committed together (exactly-once) or in turn (at-least-once).

Exactly-once: one Kafka transaction per batch holds its outputs and its input offsets, sent with
the consumer's group metadata, so the broker refuses the commit of a worker that lost its
partitions meanwhile (a zombie); readers with ``isolation.level=read_committed`` see a batch's
outputs only once its offsets are committed, and an aborted batch never. At-least-once: the
outputs are flushed, then the offsets committed; a crash in between repeats the batch's outputs.

Records are produced with no Python callback or future per record: librdkafka reports failed
deliveries only (``delivery.report.only.error``), and the transaction's commit (or the flush)
says whether everything arrived.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from streams.kafka.config import confluent_config
from streams.kafka.noise import client_callbacks
from streams.kafka.retry import RETRY_S, Stopped, until_answered
from streams.kafka.source import KafkaSource
from streams.records import KeyValue, Topic
from streams.settings import KafkaSettings

__all__ = ["KafkaOutput"]

CALL_S = 10  # librdkafka's own timeout of a transactional call
GRACE_S = 5  # how much longer a call may take before it is taken to hang

log = logging.getLogger(__name__)


class KafkaOutput:
    """Sends the outputs of a batch and commits its input offsets through ``source``'s group.

    Args:
        name: the loop's name, part of its transactional id.
    """

    def __init__(self, kafka: KafkaSettings, source: KafkaSource, name: str) -> None:
        self.kafka, self.source = kafka, source
        self.transactional = kafka.guarantee == "exactly-once"
        self.transactional_id = f"{kafka.topic_prefix}{name}-{kafka.worker_id or uuid.uuid4().hex[:12]}"
        self.names = {topic: kafka.topic(topic) for topic in Topic}
        self.failures: list[KafkaError] = []
        self.open = False  # whether a transaction is open
        self.producer = self._producer()

    def _producer(self) -> Producer:
        extra = {
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 1,
            "partitioner": "murmur2_random",  # the Java client's: co-partitioning holds across producers
            "message.max.bytes": self.kafka.max_message_bytes + 65536,
            "delivery.report.only.error": True,
            # A transaction begun right after a commit is refused while the broker writes the commit
            # markers, and retried after this backoff: 100 ms by default, which capped a worker at
            # ten transactions a second (docs/benchmarks.md).
            "retry.backoff.ms": 5,
            "on_delivery": self._failed,
            **client_callbacks(),
        }
        if self.transactional:
            extra |= {"transactional.id": self.transactional_id,
                      "transaction.timeout.ms": self.kafka.transaction_timeout_ms}  # fmt: skip
        producer = Producer(confluent_config(self.kafka, extra))
        if self.transactional:
            until_answered(lambda: producer.init_transactions(30), "starting transactions", None)
        return producer

    def _failed(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self.failures.append(error)

    def write(self, records: dict[Topic, list[KeyValue]]) -> None:
        """Send ``records`` as part of the open commit (exactly-once: a transaction begins with the first)."""
        if self.transactional and not self.open:
            self.producer.begin_transaction()
            self.open = True
        produce = self.producer.produce
        for topic, pairs in records.items():
            name = self.names[topic]
            for key, value in pairs:
                while True:
                    try:
                        produce(name, value, key)
                        break
                    except BufferError:  # librdkafka's queue is full: let it drain
                        self.producer.poll(0.05)

    def commit(self, offsets: list[TopicPartition], stop: threading.Event) -> bool:
        """Commit what was written since the last commit with the input ``offsets``; False when it was not.

        After False, nothing written since the last commit is visible to committed readers
        (exactly-once), and the input must be read again from the committed offsets.

        Raises:
            Stopped: ``stop`` was set while the broker did not answer.
        """
        if self.transactional:
            return self._transaction(offsets, stop)
        while self.producer.flush(RETRY_S):
            if stop.is_set():
                raise Stopped
        if self.failures:
            log.warning("%d outputs were not delivered (%s); the batch is read again", len(self.failures),
                        self.failures[0].str())  # fmt: skip
            self.failures.clear()
            return False
        try:
            if offsets:
                self.source.commit(offsets)
        except KafkaException as exc:  # its partitions moved: the new owner reads the batch again
            log.warning("offsets not committed (%s); the batch's outputs may be repeated", exc.args[0].str())
        return True

    def _transaction(self, offsets: list[TopicPartition], stop: threading.Event) -> bool:
        producer = self.producer
        try:
            if not self.open:
                producer.begin_transaction()
                self.open = True
            if offsets:
                group = self.source.consumer.consumer_group_metadata()
                until_answered(
                    lambda: _bounded(lambda: producer.send_offsets_to_transaction(offsets, group, CALL_S)),
                    "sending offsets",
                    stop,
                )
            until_answered(lambda: _bounded(lambda: producer.commit_transaction(CALL_S)), "committing", stop)
            return True
        except KafkaException as exc:
            self._abort(exc.args[0], stop)
            self.failures.clear()
            return False
        except Unanswered:
            log.error("the producer did not answer in %.0fs; starting a new one, which aborts its transaction",
                      CALL_S + GRACE_S)  # fmt: skip
            self.producer = self._producer()
            return False
        finally:
            self.open = False

    def _abort(self, error: KafkaError, stop: threading.Event) -> None:
        if not error.fatal():
            log.warning("batch aborted (%s); its input is read again", error.str())
            try:
                until_answered(lambda: self.producer.abort_transaction(30), "aborting", stop)
                return
            except KafkaException as exc:
                error = exc.args[0]
        log.error("the producer can't go on (%s); starting a new one", error.str())
        self.producer = self._producer()

    def close(self) -> None:
        """Abort a transaction left open by a stop, and let the producer go."""
        if self.open:
            with contextlib.suppress(KafkaException):
                self.producer.abort_transaction(5)
        self.producer.flush(5)


class Unanswered(Exception):
    """A librdkafka call ran past its own timeout."""


def _bounded(call: Callable[[], None]) -> None:
    """``call()`` in a thread of its own, waited for ``CALL_S + GRACE_S`` at most.

    librdkafka's ``send_offsets_to_transaction`` can block past its timeout, for good, when the
    group coordinator went away during the transaction (librdkafka issues 5456 and 5511; seen here
    when the broker was killed and restarted mid-batch). The caller then replaces the producer: a
    new one with the same transactional id fences the stuck one and aborts its transaction.

    Raises:
        Unanswered: the call did not return in time.
    """
    failure: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="librdkafka-call", daemon=True)
    thread.start()
    thread.join(CALL_S + GRACE_S)
    if thread.is_alive():
        raise Unanswered
    if failure:
        raise failure[0]
