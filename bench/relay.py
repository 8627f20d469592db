"""The ceiling of bench/broker.py: a relay on plain confluent-kafka, with no loopline code at all.

    python bench/relay.py BOOTSTRAP INPUT_TOPIC OUTPUT_TOPIC GROUP [--max-batch 1024]
        [--max-wait-ms 5] [--transactional] [--retry-backoff-ms MS] [--commit-interval-ms MS]

It copies every record of INPUT_TOPIC to OUTPUT_TOPIC unchanged (same key and value), one batch
at a time: ``consume(num_messages=max_batch)``, one ``produce`` per record, ``poll(0)`` (delivery
reports), then

* plain: ``flush`` and a synchronous offset commit (idempotent producer, acks=all);
* transactional: ``begin_transaction``, the produces, ``send_offsets_to_transaction`` and
  ``commit_transaction`` per batch (exactly-once); with ``--commit-interval-ms``, a transaction
  takes full batches for up to that long and is committed with the first short one (the commit
  policy of loopline's loop).

It runs until SIGTERM or SIGINT. Its clients have the librdkafka settings of loopline's batch loop,
so that a comparison with it measures what loopline's own code costs: the consumer reads with
``isolation.level=read_committed`` and ``fetch.message.max.bytes`` 16 MiB (loopline's largest
record; with librdkafka's 1 MiB the relay drained a 300,000-record backlog at about half the
speed), the producer with acks=all, idempotence, linger.ms=1, retry.backoff.ms=5 and delivery
reports of failures only.
``--retry-backoff-ms`` sets librdkafka's ``retry.backoff.ms`` (its default is 100), which paces a
transaction that must wait for the previous one's commit markers (CONCURRENT_TRANSACTIONS).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition


def ends(messages: list[Message]) -> list[TopicPartition]:
    """The offsets after the last record of each partition in ``messages``."""
    last: dict[tuple[str, int], int] = {}
    for message in messages:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None and partition is not None and offset is not None
        last[(topic, partition)] = offset + 1
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in last.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bootstrap")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("group")
    parser.add_argument("--max-batch", type=int, default=1024)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--transactional", action="store_true")
    parser.add_argument("--retry-backoff-ms", type=int, default=5, help="librdkafka's retry.backoff.ms")
    parser.add_argument("--commit-interval-ms", type=float, default=0.0, help="longest transaction of full batches")
    args = parser.parse_args()

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))

    consumer = Consumer({
        "bootstrap.servers": args.bootstrap, "group.id": args.group, "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "isolation.level": "read_committed", "fetch.message.max.bytes": 16 << 20,
    })  # fmt: skip
    producer_config = {
        "bootstrap.servers": args.bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 1,
        "partitioner": "murmur2_random", "delivery.report.only.error": True,
    }  # fmt: skip
    producer_config["retry.backoff.ms"] = args.retry_backoff_ms
    if args.transactional:
        producer_config["transactional.id"] = f"{args.group}-{uuid.uuid4().hex[:8]}"
    producer = Producer(producer_config)
    if args.transactional:
        producer.init_transactions(30)
    consumer.subscribe([args.input])
    wait_s, interval_s = args.max_wait_ms / 1000, args.commit_interval_ms / 1000
    opened: float | None = None  # when the open transaction began
    offsets: list[Message] = []  # the last record of each batch in it
    try:
        while not stopping:
            messages = consumer.consume(num_messages=args.max_batch, timeout=wait_s)
            messages = [m for m in messages if m.error() is None]
            if not messages:
                if opened is not None:
                    producer.send_offsets_to_transaction(ends(offsets), consumer.consumer_group_metadata(), 30)
                    producer.commit_transaction(30)
                    opened, offsets = None, []
                continue
            if args.transactional and opened is None:
                producer.begin_transaction()
                opened = time.monotonic()
            for message in messages:
                while True:
                    try:
                        producer.produce(args.output, message.value(), message.key())
                        break
                    except BufferError:
                        producer.poll(0.05)
            producer.poll(0)  # serve the delivery reports (of failures), which hold their records' room in the queue
            if opened is not None:
                offsets += messages
                if len(messages) < args.max_batch or time.monotonic() - opened >= interval_s:
                    producer.send_offsets_to_transaction(ends(offsets), consumer.consumer_group_metadata(), 30)
                    producer.commit_transaction(30)
                    opened, offsets = None, []
            else:
                if producer.flush(30):
                    raise KafkaException("outputs not delivered in 30 s")
                consumer.commit(offsets=ends(messages), asynchronous=False)
    finally:
        if args.transactional:
            with contextlib.suppress(KafkaException):  # none was open
                producer.abort_transaction(5)
        producer.flush(5)
        consumer.close()


if __name__ == "__main__":
    main()
