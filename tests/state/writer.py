"""A process that commits a state's changes the way the batch loop does, then waits to be killed.

    python -m tests.state.writer <state dir> <rounds with a checkpoint at every commit> <rounds without>

Settings come from the environment (``LOOPLINE_KAFKA_*``). Every round writes ``KEYS_PER_ROUND``
changes to each changelog partition in one transaction: ``KEYS_PER_ROUND`` changelog records each,
then their marker. After the last round a transaction is left open with one more round's changes,
and "ready" is printed.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Producer

from loopline.kafka.config import confluent_config
from loopline.records import Topic
from loopline.settings import KafkaSettings
from loopline.state.changelog import KafkaChangelog
from loopline.state.state import State
from loopline.state.store import DiskStore

KEYS, KEYS_PER_ROUND, PARTITIONS = 50, 10, (0, 1)
TRANSACTIONAL_ID = "state-writer"


def play(
    number: int, get: Callable[[int, bytes], bytes | None], put: Callable[[int, bytes, bytes | None], None]
) -> None:
    """Round ``number``'s changes: ``KEYS_PER_ROUND`` keys of each partition written, or (every other
    key, from round 5 on) deleted where they are held."""
    for partition in PARTITIONS:
        for j in range(KEYS_PER_ROUND):
            key = f"k{(number * KEYS_PER_ROUND + j) % KEYS:03d}".encode()
            delete = number >= 5 and j % 2 == 0 and get(partition, key) is not None
            put(partition, key, None if delete else f"{number}.{j}".encode())


def expected(rounds: int) -> dict[int, dict[bytes, bytes]]:
    """Partition → items after ``rounds`` committed rounds."""
    items: dict[int, dict[bytes, bytes]] = {partition: {} for partition in PARTITIONS}

    def put(partition: int, key: bytes, value: bytes | None) -> None:
        if value is None:
            del items[partition][key]
        else:
            items[partition][key] = value

    for number in range(rounds):
        play(number, lambda partition, key: items[partition].get(key), put)
    return items


def changelog_topic(kafka: KafkaSettings) -> str:
    return kafka.topic(Topic.JOIN_CHANGELOG)


def producer(kafka: KafkaSettings) -> Producer:
    """The writer's transactional producer; a new one fences the last and aborts its open transaction."""
    made = Producer(confluent_config(kafka, {"transactional.id": kafka.topic_prefix + TRANSACTIONAL_ID}))
    made.init_transactions(30)
    return made


def main(directory: Path, checkpointed: int, after: int) -> None:
    kafka = KafkaSettings()
    topic = changelog_topic(kafka)
    state = State("writer", lambda p: DiskStore(directory / str(p)), KafkaChangelog(kafka, topic),
                  checkpoint_interval_s=0)  # fmt: skip
    state.assign(PARTITIONS)
    out = producer(kafka)

    def put(partition: int, key: bytes, value: bytes | None) -> None:
        if value is None:
            state.delete(partition, key)
        else:
            state.put(partition, key, value)

    for number in range(checkpointed + after + 1):
        if number == checkpointed:
            state.checkpoint_interval_s = float("inf")  # no checkpoint from here on
        play(number, state.get, put)
        out.begin_transaction()
        for partition, changes in state.changes().items():
            for key, value in changes.items():
                out.produce(topic, value=value, key=key, partition=partition)
        out.flush(30)
        if number == checkpointed + after:
            break  # left open
        out.commit_transaction(30)
        state.committed()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
