"""Batches' outputs and their input offsets, committed together (exactly-once) or in turn (at-least-once).

Exactly-once: one Kafka transaction holds the outputs of one or more batches and the input
offsets after them, sent with the consumer's group metadata, so the broker refuses the commit of
a worker that lost its partitions meanwhile (a zombie); readers with
``isolation.level=read_committed`` see the outputs only once their offsets are committed, and an
aborted transaction's never. At-least-once: the outputs are flushed, then the offsets committed;
a crash in between repeats the outputs. ``commit(..., close=False)`` sends a batch into the open
transaction (or, at-least-once, hands its records to librdkafka) and commits nothing yet.

Records are produced with no Python callback or future per record: librdkafka reports failed
deliveries only (``delivery.report.only.error``), and the transaction's commit (or the flush)
says whether everything arrived.

A record the broker (or librdkafka) refuses for what it is, not for the state of the broker, is
not retried: the batch is aborted and :class:`Refused` names the records, so that the loop can
dead-letter their inputs and commit the rest. Other failures abort the batch to be read again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from loopline.kafka.bounded import CALL_S, LOST, Unanswered, bounded
from loopline.kafka.clients import producer_max_bytes
from loopline.kafka.config import confluent_config
from loopline.kafka.noise import client_callbacks, client_log
from loopline.kafka.retry import RETRY_S, Stopped, until_answered
from loopline.kafka.source import KafkaSource
from loopline.records import KeyValue, Topic
from loopline.settings import KafkaSettings
from loopline.state.store import Changes

__all__ = ["RECORD_ERRORS", "KafkaOutput", "Refused"]

log = logging.getLogger(__name__)

RECORD_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_TIMESTAMP,
    }
)
"""Errors about a record itself: sending it again fails the same way. Errors about the broker or
the client's rights (an outage, a missing topic, an ACL) are left to retries and to the operator."""


class Refused(Exception):
    """Records of a batch can never be sent; nothing of the batch was committed.

    Attributes:
        records: (catalogue topic, position among the batch's records of that topic, error) of
            each refused record.
    """

    def __init__(self, records: list[tuple[Topic, int, str]]) -> None:
        super().__init__(f"{len(records)} records refused: {records[0][2] if records else ''}")
        self.records = records


class KafkaOutput:
    """Sends the outputs of a batch and commits its input offsets through ``source``'s group.

    Args:
        name: the loop's name, part of its transactional id.
        changelog: the topic (full name) where the batches' state changes go, partition for partition.
    """

    def __init__(self, kafka: KafkaSettings, source: KafkaSource, name: str, changelog: str | None = None) -> None:
        self.kafka, self.source, self.changelog = kafka, source, changelog
        self.transactional = kafka.guarantee == "exactly-once"
        self.transactional_id = f"{kafka.topic_prefix}{name}-{kafka.worker_id or uuid.uuid4().hex[:12]}"
        self.names = {topic: kafka.topic(topic) for topic in Topic}
        self.failures: list[tuple[KafkaError, Message]] = []
        self.open = False  # whether a transaction is open
        self.producer = self._producer()

    def _producer(self, stop: threading.Event | None = None) -> Producer:
        """A new producer; a transactional one once it has its transactional id (``stop``: while the
        broker does not answer, :class:`Stopped` ends the wait)."""
        outage = threading.Event()
        callbacks = client_callbacks()
        report = callbacks["error_cb"]

        def on_error(error: KafkaError) -> None:
            if error.code() in LOST:
                outage.set()
            report(error)

        extra = {
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 1,
            "partitioner": "murmur2_random",  # the Java client's: co-partitioning holds across producers
            "message.max.bytes": producer_max_bytes(self.kafka),
            "delivery.report.only.error": True,
            # A transaction begun right after a commit is refused while the broker writes the commit
            # markers, and retried after this backoff: 100 ms by default, which capped a worker at
            # ten transactions a second (docs/benchmarks.md).
            "retry.backoff.ms": 5,
            "on_delivery": self._failed,
            **callbacks,
            "error_cb": on_error,
        }
        if self.transactional:
            extra |= {"transactional.id": self.transactional_id,
                      "transaction.timeout.ms": self.kafka.transaction_timeout_ms}  # fmt: skip
        producer = Producer(confluent_config(self.kafka, extra))
        if self.transactional:
            until_answered(lambda: producer.init_transactions(30), "starting transactions", stop)
        self.open = False
        self.outage = outage
        return producer

    def _failed(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.failures.append((error, message))

    def commit(
        self,
        records: dict[Topic, list[KeyValue]],
        offsets: list[TopicPartition],
        stop: threading.Event,
        changes: dict[int, Changes] | None = None,
        close: bool = True,
    ) -> bool:
        """Send ``records`` and the state ``changes`` (partition → key → value, None: deleted) and, with
        ``close``, commit them, with what earlier calls sent, at ``offsets`` (every input partition
        of those calls); False when nothing of it was committed.

        After False, nothing of the calls since the last commit is visible to committed readers
        (exactly-once) and their input must be read again from the committed offsets. A producer
        call that fails otherwise than as the client documents (any other exception, or no answer
        in time) costs the producer: a new one takes its place and aborts its transaction (where
        the commit call itself failed, the commit may have landed; the committed offsets then say
        so, and the input is read again from them all the same).

        Raises:
            Stopped: ``stop`` was set while the broker did not answer.
            Refused: records of this call that can never be sent; nothing was committed
                (at-least-once: the other records may have been delivered, and are sent again
                with the next try). A failed delivery of an earlier call's record returns False.
        """
        if self.transactional:
            return self._transaction(records, offsets, stop, changes or {}, close)
        try:
            refused = self._produce(records, changes or {})
            if not close and not refused:
                return True
            self._wait_delivered(stop)
        except (Stopped, KafkaException):
            raise
        except Exception as exc:  # the client broke: the records since the last commit are sent again
            self._renew(repr(exc), stop)
            self.failures.clear()
            return False
        refused += self._refused(records)
        if refused:
            self.failures.clear()
            raise Refused(refused)
        if self.failures:
            log.warning("%d outputs were not delivered (%s); their input is read again", len(self.failures),
                        self.failures[0][0].str())  # fmt: skip
            self.failures.clear()
            return False
        try:
            self.source.commit(offsets)
        except KafkaException as exc:  # its partitions moved: the new owner reads the batch again
            log.warning("offsets not committed (%s); the batch's outputs may be repeated", exc.args[0].str())
        return True

    def _transaction(
        self,
        records: dict[Topic, list[KeyValue]],
        offsets: list[TopicPartition],
        stop: threading.Event,
        changes: dict[int, Changes],
        close: bool,
    ) -> bool:
        producer = self.producer
        try:
            sent = False
            if not self.open:
                producer.poll(0)  # serves the error callbacks of the time since the last transaction
                if self.outage.is_set():  # see loopline.kafka.bounded: a new producer knows no coordinator from before
                    self._renew("it lost a broker connection since its last transaction", stop)
                    producer = self.producer
                producer.begin_transaction()
                self.open = True
                if offsets:
                    # Before the records: the broker refuses a transaction while it still writes
                    # the previous one's markers; librdkafka retries the offsets after
                    # retry.backoff.ms, but the records' partitions only after a fixed 20 ms.
                    self._send_offsets(offsets, stop)
                    sent = True
            refused = self._produce(records, changes)
            if not refused and not close:
                return True
            if not refused:
                if offsets and not sent:
                    self._send_offsets(offsets, stop)
                self._wait_delivered(stop)
                refused = self._refused(records)
            if refused:
                log.warning("transaction aborted: %d records refused (%s)", len(refused), refused[0][2])
                self._abort(stop)
                self.failures.clear()
                raise Refused(refused)
            if self.failures:  # records of an earlier call: the loop reads them again
                log.warning("transaction aborted: %d records not delivered (%s)", len(self.failures),
                            self.failures[0][0].str())  # fmt: skip
                self._abort(stop)
                self.failures.clear()
                return False
            commit = lambda: producer.commit_transaction(CALL_S)  # noqa: E731
            until_answered(lambda: bounded(commit, producer, self.outage), "committing", stop)
            self.open = False
            return True
        except (Refused, Stopped):
            raise
        except Unanswered as exc:
            self._renew(str(exc), stop)
            self.failures.clear()
            return False
        except KafkaException as exc:
            error = exc.args[0]
            if not error.fatal():
                log.warning("transaction aborted (%s); its input is read again", error.str())
                self._abort(stop)
            else:
                self._renew(error.str(), stop)
            refused = self._refused(records)
            self.failures.clear()
            if refused:
                raise Refused(refused) from exc
            return False
        except Exception as exc:  # the client broke otherwise (seen: a SystemError out of a fenced producer's flush)
            self._renew(repr(exc), stop)
            self.failures.clear()
            return False

    def _send_offsets(self, offsets: list[TopicPartition], stop: threading.Event) -> None:
        group = self.source.consumer.consumer_group_metadata()
        until_answered(
            lambda: bounded(
                lambda: self.producer.send_offsets_to_transaction(offsets, group, CALL_S), self.producer, self.outage
            ),
            "sending offsets",
            stop,
        )

    def mark(self, offsets: list[TopicPartition], stop: threading.Event) -> None:
        """Commit ``offsets`` with their metadata now, outside any transaction (the loop's crash count).

        One try: a mark that does not land (the partitions moved, the broker is away) only leaves
        the count where it was.
        """
        if not offsets:
            return
        try:
            self.source.commit(offsets)
        except KafkaException as exc:
            log.warning("crash count not committed (%s)", exc.args[0].str())

    def _wait_delivered(self, stop: threading.Event) -> None:
        """Wait until librdkafka has an answer for every record, or one of them was refused.

        A refused record holds the records behind it in its partition until the transaction is
        aborted, so waiting for all of them (as the commit does) would wait out the API timeout.
        """
        while remaining := self.producer.flush(RETRY_S):
            if any(error.code() in RECORD_ERRORS for error, _ in self.failures):
                return
            if stop.is_set():
                raise Stopped
            client_log.warning("sending: %d records not acknowledged yet; waiting", remaining)

    def _abort(self, stop: threading.Event) -> None:
        try:
            until_answered(lambda: self.producer.abort_transaction(30), "aborting", stop)
            self.open = False
        except Stopped:
            raise
        except KafkaException as exc:
            self._renew(exc.args[0].str(), stop)
        except Exception as exc:  # whatever the client raises, a new producer aborts the transaction
            self._renew(repr(exc), stop)

    def _renew(self, why: str, stop: threading.Event) -> None:
        """Replace the producer: a new one with the same transactional id fences the old one and aborts its
        transaction; what was sent since the last commit is read again."""
        log.error("the producer can't go on (%s); starting a new one, which aborts its transaction", why)
        self.producer = self._producer(stop)

    def _produce(
        self, records: dict[Topic, list[KeyValue]], changes: dict[int, Changes]
    ) -> list[tuple[Topic, int, str]]:
        """Hand ``records`` and ``changes`` to librdkafka; the records it refuses at once, as :attr:`Refused.records`.

        Raises:
            KafkaException: a state change was refused: the core made a value larger than the topics take.
        """
        produce = self.producer.produce
        for partition, keyed in changes.items():
            assert self.changelog is not None, "state changes without a changelog topic"
            for key, value in keyed.items():
                while True:
                    try:
                        produce(self.changelog, value, key, partition=partition)
                        break
                    except BufferError:
                        self.producer.poll(0.05)
        refused = []
        for topic, pairs in records.items():
            name = self.names[topic]
            for index, (key, value) in enumerate(pairs):
                while True:
                    try:
                        produce(name, value, key)
                        break
                    except BufferError:  # librdkafka's queue is full: let it drain
                        self.producer.poll(0.05)
                    except KafkaException as exc:
                        if exc.args[0].code() not in RECORD_ERRORS:
                            raise
                        refused.append((topic, index, exc.args[0].str()))
                        break
        return refused

    def _refused(self, records: dict[Topic, list[KeyValue]]) -> list[tuple[Topic, int, str]]:
        """The records of ``records`` whose delivery failed for what they are (:data:`RECORD_ERRORS`);
        the other failures stay in :attr:`failures`."""
        if not self.failures:
            return []
        topics = {name: topic for topic, name in self.names.items()}
        where: dict[tuple[Topic, bytes | None, bytes | None], int] = {
            (topic, key, value): index for topic, pairs in records.items() for index, (key, value) in enumerate(pairs)
        }
        refused, rest = [], []
        for error, message in self.failures:
            topic = topics.get(message.topic() or "")
            index = None
            if topic is not None and error.code() in RECORD_ERRORS:
                index = where.get((topic, message.key(), message.value()))
            if topic is not None and index is not None:
                refused.append((topic, index, error.str()))
            else:
                rest.append((error, message))
        self.failures = rest
        return refused

    def abandon(self, stop: threading.Event) -> None:
        """Abort the open transaction, if one is: nothing sent since the last commit is committed."""
        if self.transactional and self.open:
            self._abort(stop)
        self.failures.clear()

    def close(self) -> None:
        """Abort a transaction left open by a stop and let the producer go."""
        if self.transactional and self.open:
            with contextlib.suppress(KafkaException):  # the broker is away: it aborts the transaction itself
                self.producer.abort_transaction(5)
        self.producer.flush(5)
