"""One follower of the model-versions topic per worker, publishing frozen snapshots of the registry.

A worker's :class:`RegistryFollower` reads model-versions on a thread of its own and hands the
registry over as :class:`~loopline.models.registry.fold.Snapshot` values: after each poll that
changed anything it makes a new snapshot and replaces the last one in one assignment. A reader (a
batch loop, the core it calls) takes :attr:`RegistryFollower.snapshot` and works on it without I/O;
records read later make the next snapshot and never change one that is held, so no reader sees a
registry half folded. :meth:`RegistryFollower.catch_up` waits until the thread has read up to the
ends the topic has at that call: what was published before it is then in the snapshot.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from loopline.codec import Codec, CodecError
from loopline.kafka.clients import watermarks
from loopline.kafka.config import confluent_config
from loopline.kafka.noise import client_callbacks
from loopline.kafka.source import to_source
from loopline.models.registry.fold import Registry, Snapshot
from loopline.models.registry.records import ModelVersion
from loopline.records import SourceRecord, Topic
from loopline.settings import KafkaSettings

__all__ = ["CATCH_UP_S", "Listener", "RegistryFollower"]

log = logging.getLogger(__name__)

CATCH_UP_S = 10.0
"""How long :meth:`RegistryFollower.catch_up` waits by default."""
POLL_S = 0.05
"""The longest poll: a new version is in the snapshot within 50 ms of its arrival, not half a second."""


class Listener(Protocol):
    """Told, on the follower's thread, of what it reads (the inference worker stages versions so)."""

    def folded(self, source: SourceRecord, version: ModelVersion) -> None:
        """``version`` came in ``source`` and was folded."""

    def refused(self, source: SourceRecord, version: ModelVersion | None, reason: str, error: str) -> None:
        """``source`` was not folded: not a version record (``version`` None, the codec's reason), or one
        that changes more than a published version's status (``version-conflict``)."""

    def polled(self, snapshot: Snapshot) -> None:
        """A poll ended; ``snapshot`` is the registry as read so far (called after every poll)."""


@dataclass
class _Wait:
    """A :meth:`RegistryFollower.catch_up` call: the ends to reach, once the follower's thread read them."""

    ends: Mapping[int, int] | None = None
    done: bool = False


class RegistryFollower:
    """Reads model-versions from its start (read_committed, no consumer group: every worker reads every
    partition) and publishes the registry as a frozen, revision-numbered :class:`Snapshot`.

    Args:
        kafka: the cluster and the topic prefix.
        listener: told of each record read and of each poll, on the follower's thread.
    """

    def __init__(self, kafka: KafkaSettings, listener: Listener | None = None) -> None:
        self.kafka, self.listener = kafka, listener
        self.codec = Codec.load("model_version")
        self.partitions: list[int] = []
        """The topic's partitions, as the follower's thread found them."""
        self._registry = Registry()
        self._read_to: dict[int, int] = {}
        self._ended: set[int] = set()
        self._snapshot = self._registry.snapshot()
        self._changed = threading.Condition()
        self._waits: list[_Wait] = []

    @property
    def snapshot(self) -> Snapshot:
        """The registry as read so far (no I/O: the last snapshot the follower's thread made)."""
        return self._snapshot

    def catch_up(self, timeout_s: float = CATCH_UP_S) -> Snapshot:
        """The snapshot once the follower has read every partition up to the end it had at this call, so
        that it holds every record published before the call.

        Raises:
            TimeoutError: the follower did not get there within ``timeout_s`` (the broker does not answer,
                or the follower's thread does not run).
        """
        wait = _Wait()
        with self._changed:
            self._waits.append(wait)
            if not self._changed.wait_for(lambda: wait.done, timeout_s):
                self._waits.remove(wait)
                raise TimeoutError(f"model-versions was not read to its end within {timeout_s:g}s")
            return self._snapshot

    def run(self, stop: threading.Event) -> None:
        """Follow the topic until ``stop`` is set (the worker's thread body); after an error the reading goes
        on, 2 s later, from where it was."""
        while not stop.is_set():
            try:
                self._follow(stop)
            except Exception:
                log.exception("following model-versions failed; going on in 2s")
                stop.wait(2)

    def _follow(self, stop: threading.Event) -> None:
        topic = self.kafka.topic(Topic.MODEL_VERSIONS)
        consumer = Consumer(confluent_config(self.kafka, {
            "group.id": "loopline-unused", "enable.auto.commit": False, "isolation.level": "read_committed",
            "fetch.message.max.bytes": self.kafka.max_message_bytes, "enable.partition.eof": True,
            **client_callbacks(),
        }))  # fmt: skip
        try:
            self.partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
            consumer.assign([TopicPartition(topic, p, self._read_to.get(p, OFFSET_BEGINNING)) for p in self.partitions])
            while not stop.is_set():
                self._ask_ends(consumer, topic)
                records: list[SourceRecord] = []
                ended: dict[int, int] = {}
                for message in consumer.consume(num_messages=1000, timeout=POLL_S):
                    error, partition, offset = message.error(), message.partition(), message.offset()
                    if error is None:
                        records.append(to_source(message))
                    elif error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    elif partition is not None and offset is not None:
                        ended[partition] = offset
                self.read(records, ended)
        finally:
            consumer.close()

    def _ask_ends(self, consumer: Consumer, topic: str) -> None:
        """Give the catch-up calls waiting for them the topic's ends now (the last stable offsets: the
        consumer reads committed records)."""
        with self._changed:
            asking = [wait for wait in self._waits if wait.ends is None]
        if asking:
            ends = {p: watermarks(consumer, TopicPartition(topic, p), 10)[1] for p in self.partitions}
            for wait in asking:
                wait.ends = ends

    def read(self, records: Iterable[SourceRecord], ended: Mapping[int, int]) -> Snapshot:
        """Fold ``records`` (in offset order per partition) and note the partitions found at their end
        (partition → end offset); publish a new snapshot when anything changed, and tell the listener.
        Called by the follower's thread after each poll."""
        changed = False
        for source in records:
            self._fold(source)
            self._read_to[source.partition] = source.offset + 1
            changed = True
        for partition, end in ended.items():
            if partition not in self._ended or end > self._read_to.get(partition, 0):
                self._read_to[partition] = max(end, self._read_to.get(partition, 0))
                self._ended.add(partition)
                changed = True
        if changed:
            complete = bool(self.partitions) and self._ended.issuperset(self.partitions)
            self._snapshot = self._registry.snapshot(self._read_to, complete)
        with self._changed:
            for wait in self._waits:
                if wait.ends is not None and all(self._read_to.get(p, 0) >= end for p, end in wait.ends.items()):
                    wait.done = True
            self._waits = [wait for wait in self._waits if not wait.done]
            self._changed.notify_all()
        if self.listener is not None:
            self.listener.polled(self._snapshot)
        return self._snapshot

    def _fold(self, source: SourceRecord) -> None:
        try:
            version = ModelVersion.from_record(self.codec.decode(source.value))
        except CodecError as exc:
            log.error("model-versions offset %d is not a version record: %s", source.offset, exc)
            if self.listener is not None:
                self.listener.refused(source, None, exc.reason, str(exc))
            return
        conflict = self._registry.apply(version)
        if conflict is not None:
            log.error("model-versions offset %d: %s", source.offset, conflict)
            if self.listener is not None:
                self.listener.refused(source, version, "version-conflict", conflict)
        elif self.listener is not None:
            self.listener.folded(source, version)
