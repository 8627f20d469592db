"""Reading a changelog topic back into a store, committed records only, up to the end of the log;
and :func:`kafka_state`, an agent's state on its changelog topic and its stores.

A read_committed consumer stops at the partition's last stable offset: behind a transaction that
is still open (a crashed writer's, until the broker aborts it) there may be committed records
that the state needs. So a restore reads until it has passed the end of the log as it was when
the restore began, waiting for such a transaction to end; the wait is bounded by twice the
transaction timeout, after which the restore goes on with what it has and says so.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from loopline.kafka.config import confluent_config
from loopline.kafka.noise import client_callbacks, client_log
from loopline.metrics import STATE_RESTORE_SECONDS, STATE_RESTORED
from loopline.records import Topic
from loopline.settings import KafkaSettings, StateSettings
from loopline.state.state import OutOfRange, State
from loopline.state.store import Changes, DiskStore, MemoryStore, Store

__all__ = ["KafkaChangelog", "kafka_state"]

log = logging.getLogger(__name__)

CHUNK = 10_000  # records applied to the store at once
END_TIMEOUT_S = 5.0  # the wait for a changelog's last stable offset, in the batch loop's thread


class KafkaChangelog:
    """The changelog topic ``topic`` (full name), read one partition at a time."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.kafka, self.topic = kafka, topic
        self.wait_s = 2 * kafka.transaction_timeout_ms / 1000 + 5
        self.consumer = Consumer(
            confluent_config(
                kafka,
                {
                    "group.id": f"{topic}-restore-{uuid.uuid4().hex[:8]}",  # never joined: partitions are assigned
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_committed",
                    "fetch.message.max.bytes": kafka.max_message_bytes,
                    "fetch.wait.max.ms": 10,  # the end of a partition is found at once, not after the broker's 500 ms
                    **client_callbacks(),
                },
            )
        )

    def read(self, partition: int, start: int | None, apply: Callable[[Changes], None]) -> int:
        """Apply the committed records of ``partition`` from ``start`` (None: the first) to the end of the log;
        returns how many were read.

        Raises:
            OutOfRange: ``start`` is not in the log (the topic was made again): read it from the first.
        """
        self.consumer.assign([TopicPartition(self.topic, partition, start if start is not None else OFFSET_BEGINNING)])
        position, end, count = start or 0, None, 0
        changes: Changes = {}
        deadline, said = time.monotonic() + self.wait_s, time.monotonic()
        try:
            while True:
                for message in self.consumer.consume(CHUNK, 0.05):
                    error, offset = message.error(), message.offset() or 0
                    if error is None:
                        if start is not None and offset < start:  # the consumer was reset to the first
                            raise OutOfRange(f"{self.topic}[{partition}] has no offset {start}")
                        changes[message.key() or b""] = message.value()
                        position, count = offset + 1, count + 1
                    elif error.code() == KafkaError._PARTITION_EOF:
                        position = max(position, offset)  # the last stable offset: markers and aborted records passed
                        if end is None:  # the log's end as the first answer saw it, open transactions included
                            end = max(0, self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition),
                                                                             cached=True)[1])  # fmt: skip
                    else:
                        client_log.warning("restoring %s[%d]: %s", self.topic, partition, error.str())
                if len(changes) >= CHUNK:
                    apply(changes)
                    changes = {}
                if end is not None and position >= end:
                    break
                if end is None:  # no answer from the partition's leader yet (the broker is away): wait for it
                    deadline = time.monotonic() + self.wait_s
                    if time.monotonic() > said + 30:
                        said = time.monotonic()
                        log.warning("restoring %s[%d]: waiting for the broker", self.topic, partition)
                    continue
                if time.monotonic() > deadline:
                    log.warning("restoring %s[%d]: committed records end at %d, the log at %s, after %.0fs (a "
                                "transaction still open); going on", self.topic, partition, position, end,
                                self.wait_s)  # fmt: skip
                    break
        finally:
            self.consumer.unassign()
        if changes:
            apply(changes)
        return count

    def end(self, partition: int) -> int | None:
        """The partition's last stable offset (a read_committed consumer's high watermark): no transaction
        is open before it; None when the broker does not answer within ``END_TIMEOUT_S`` (the store
        keeps its last checkpoint)."""
        try:
            return int(self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition),
                                                           timeout=END_TIMEOUT_S)[1])  # fmt: skip
        except KafkaException as exc:
            client_log.warning("reading the end of %s[%d]: %s", self.topic, partition, exc.args[0].str())
            return None

    def close(self) -> None:
        self.consumer.close()


def kafka_state(
    kafka: KafkaSettings, settings: StateSettings, agent: str, changelog: Topic, group: str | None = None
) -> State:
    """The state of an agent's core, on the stores ``settings`` choose, logged to the catalogue topic ``changelog``.

    Disk stores live in ``<dir>/<prefix><group or agent>/<worker id>/<partition>``: a worker started
    again with the same ``LOOPLINE_KAFKA_WORKER_ID`` finds them (with their checkpoints); without one,
    each start has a directory of its own.
    """
    root = settings.dir / f"{kafka.topic_prefix}{group or agent}"
    mine = root / (kafka.worker_id or f"pid-{os.getpid()}")
    if settings.backend == "disk" and root.is_dir():
        for stale in root.glob("pid-*"):  # left by workers without an id that died: nobody finds them again
            if stale != mine and not _alive(stale.name.removeprefix("pid-")):
                shutil.rmtree(stale, ignore_errors=True)

    def open_store(partition: int) -> Store:
        return DiskStore(mine / str(partition)) if settings.backend == "disk" else MemoryStore()

    def restored(partition: int, records: int, seconds: float) -> None:
        STATE_RESTORE_SECONDS.labels(agent, str(partition)).set(seconds)
        STATE_RESTORED.labels(agent).inc(records)

    changelog_topic = KafkaChangelog(kafka, kafka.topic(changelog))
    return State(agent, open_store, changelog_topic, restored, settings.checkpoint_interval_ms / 1000)


def _alive(pid: str) -> bool:
    """Whether process ``pid`` runs (one that can't be told is taken as running)."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
