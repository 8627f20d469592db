"""Plain confluent-kafka helpers for the CLI, the demo and tests: send records, read them back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from loopline.kafka.config import confluent_config
from loopline.kafka.noise import client_callbacks
from loopline.settings import KafkaSettings

__all__ = [
    "consume",
    "consume_to_end",
    "make_sender",
    "offset_reader",
    "producer_max_bytes",
    "read_spans",
    "read_to_end",
    "read_topic",
    "send_all",
    "watermarks",
]


def producer_max_bytes(settings: KafkaSettings) -> int:
    """librdkafka's ``message.max.bytes`` for every loopline producer: the largest record the topics take
    (``max_message_bytes``, their ``max.message.bytes``) and the room of a request around it.

    librdkafka's default (1,000,000 bytes) refused, before sending, a version record with an inline
    artifact of a megabyte or two, which the topics take.
    """
    return settings.max_message_bytes + 65536


def make_sender(settings: KafkaSettings) -> Producer:
    """A producer that waits for every in-sync replica, partitions keys with murmur2 and sends records as
    large as the topics take.

    murmur2 is the Java client's partitioner (and the agents' producers'): the data topics are co-partitioned
    by event_id only if every producer hashes keys the same way.
    """
    return Producer(
        confluent_config(
            settings,
            {
                "acks": "all",
                "linger.ms": 5,
                "enable.idempotence": True,
                "partitioner": "murmur2_random",
                "message.max.bytes": producer_max_bytes(settings),
                **client_callbacks(),
            },
        )
    )


def send_all(
    settings: KafkaSettings,
    topic: str,
    records: Iterable[tuple[bytes | str | None, bytes]],
    producer: Producer | None = None,
) -> int:
    """Produce ``(key, value)`` records to ``topic`` and wait until the broker acknowledged each.

    Pass a ``producer`` from :func:`make_sender` to reuse it across calls (a new one costs a connection).

    Raises:
        KafkaException: a record was not acknowledged.
    """
    producer = producer or make_sender(settings)
    failures: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(err)

    count = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        count += 1
    remaining = producer.flush(60)
    if failures or remaining:
        raise KafkaException(failures[0] if failures else KafkaError(KafkaError._MSG_TIMED_OUT))
    return count


def read_topic(
    settings: KafkaSettings,
    topic: str,
    *,
    until: Callable[[list[Message]], bool],
    timeout_s: float = 30.0,
    group_id: str | None = None,
) -> list[Message]:
    """Read ``topic`` from the beginning until ``until(messages)`` holds or ``timeout_s`` passes.

    Uses a throw-away consumer group unless ``group_id`` is given.
    """
    consumer = Consumer(
        confluent_config(
            settings,
            {
                "group.id": group_id or f"loopline-reader-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                **client_callbacks(),
            },
        )
    )
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not until(messages) and time.monotonic() < deadline:
            messages += consume(consumer)
    finally:
        consumer.close()
    return messages


def offset_reader(settings: KafkaSettings) -> Consumer:
    """A consumer outside any group (nothing is committed), for reading chosen offsets of committed records.

    It reports reaching the end of a partition, which is how :func:`read_spans` knows that a range
    whose last offsets hold transaction markers (never delivered) is read.
    """
    return Consumer(
        confluent_config(
            settings,
            {
                "group.id": "loopline-unused",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.message.max.bytes": settings.max_message_bytes,
                **client_callbacks(),
            },
        )
    )


def read_spans(consumer: Consumer, topic: str, spans: dict[int, tuple[int, int]], timeout_s: float) -> list[Message]:
    """The committed records of ``topic`` from offset ``start`` up to ``end`` (exclusive) of each
    partition in ``spans`` (partition → (start, end)), in offset order per partition.

    A partition is done at its ``end``, or at its end of log: offsets of aborted records and
    transaction markers are never delivered, so the last record read may lie before ``end``.

    Raises:
        KafkaException: the records were not all read within ``timeout_s``.
    """
    ends = {partition: end for partition, (start, end) in spans.items() if end > start}
    messages: list[Message] = []
    if not ends:
        return messages
    consumer.assign([TopicPartition(topic, partition, spans[partition][0]) for partition in ends])
    deadline = time.monotonic() + timeout_s
    while ends and time.monotonic() < deadline:
        # consume() waits its whole timeout unless it fills the batch: short waits, so that a range
        # read to its end returns at once rather than half a second later.
        for msg in consumer.consume(num_messages=1000, timeout=0.05):
            error = msg.error()
            partition, offset = msg.partition(), msg.offset()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                raise KafkaException(error)
            if partition not in ends or offset is None:
                continue
            if error is None and offset < ends[partition]:
                messages.append(msg)
                offset += 1
            if offset >= ends[partition]:
                del ends[partition]
    if ends:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"reading {topic} timed out"))
    return messages


def read_to_end(settings: KafkaSettings, topic: str, timeout_s: float = 30.0) -> list[Message]:
    """Every record of ``topic`` from its start to its end as of now, in offset order per partition.

    Reads without a consumer group, so that every caller sees the whole topic.
    """
    consumer = offset_reader(settings)
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        spans = {p: watermarks(consumer, TopicPartition(topic, p), timeout_s) for p in metadata.partitions}
        return read_spans(consumer, topic, spans, timeout_s)
    finally:
        consumer.close()


def consume(consumer: Consumer, timeout_s: float = 0.5) -> list[Message]:
    """The records of one poll, which waits ``timeout_s`` unless 1,000 records come first;
    end-of-partition events are skipped.

    Raises:
        KafkaException: the poll returned an error.
    """
    return consume_to_end(consumer, timeout_s)[0]


def consume_to_end(consumer: Consumer, timeout_s: float = 0.5) -> tuple[list[Message], set[int | None]]:
    """The records of one poll (as :func:`consume`), and the partitions it found at their end (a consumer
    with ``enable.partition.eof``).

    Raises:
        KafkaException: the poll returned an error.
    """
    records, ended = [], set()
    for msg in consumer.consume(num_messages=1000, timeout=timeout_s):
        error = msg.error()
        if error is None:
            records.append(msg)
        elif error.code() == KafkaError._PARTITION_EOF:
            ended.add(msg.partition())
        else:
            raise KafkaException(error)
    return records, ended


RETRIABLE = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART}


def watermarks(consumer: Consumer, partition: TopicPartition, timeout_s: float) -> tuple[int, int]:
    """Low and high offsets of ``partition``, retrying while a new topic's leader is being elected."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(partition, timeout=timeout_s)
            return int(low), int(high)
        except KafkaException as exc:
            if exc.args[0].code() not in RETRIABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
