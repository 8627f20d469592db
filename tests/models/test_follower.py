"""The registry follower: a frozen, revision-numbered snapshot per change, and the catch-up barrier."""

import dataclasses
import threading
from contextlib import contextmanager
from dataclasses import replace

import pytest
from confluent_kafka import Producer

from loopline.codec import Codec
from loopline.kafka.clients import make_sender
from loopline.kafka.config import confluent_config
from loopline.kafka.topics import create_topics
from loopline.models import Status
from loopline.models.registry import RegistryFollower, publish
from loopline.records import SourceRecord, Topic
from loopline.settings import KafkaSettings
from tests.helpers import small_model, version_of

VERSIONS = Codec.load("model_version")


@contextmanager
def following(kafka, listener=None):
    """A registry follower of ``kafka`` running on a thread of its own, as in a worker."""
    follower = RegistryFollower(kafka, listener)
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, args=(stop,))
    thread.start()
    try:
        yield follower
    finally:
        stop.set()
        thread.join()


def records(*versions, start=0):
    """The versions as model-versions records of partition 0, from offset ``start``."""
    return [SourceRecord(v.key.encode(), VERSIONS.encode(v.to_record()), "t.model-versions", 0, start + i, 0)
            for i, v in enumerate(versions)]  # fmt: skip


class Told:
    def __init__(self):
        self.seen, self.refusals, self.polls = [], [], 0

    def folded(self, source, version):
        self.seen.append(source.offset)

    def refused(self, source, version, reason, error):
        self.refusals.append((source.offset, reason))

    def polled(self, snapshot):
        self.polls += 1


def test_each_change_makes_a_new_frozen_snapshot_and_a_reader_of_an_old_one_is_unaffected(store):
    told = Told()
    follower = RegistryFollower(KafkaSettings(), told)
    follower.partitions = [0]
    v1, v2 = version_of(small_model(0), 1, store), version_of(small_model(1), 2, store, status=Status.CANDIDATE)
    empty = follower.snapshot
    first = follower.read(records(v1, v2), {})
    assert (empty.revision, first.revision) == (0, 2) and follower.snapshot is first and not first.complete
    assert follower.read([], {}) is first  # a poll that brings nothing makes no new snapshot
    promotion = first.promote("m", 2, "better")
    second = follower.read(records(*promotion, start=2), {0: 4})
    assert second.revision == 4 and second.complete and second.read_to == {0: 4}
    assert second.serving("m").version == 2
    assert first.serving("m").version == 1 and first.revision == 2 and first.read_to == {0: 2}  # as it was
    assert [v.status for v in first.versions("m")] == [Status.SERVING, Status.CANDIDATE]
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.revision = 4
    with pytest.raises(TypeError):
        second.read_to[0] = 9
    with pytest.raises(KeyError):
        first.lookup("m", 3)
    assert told.seen == [0, 1, 2, 3] and told.polls == 3


def test_a_record_that_is_not_folded_leaves_the_snapshot_as_it_is_and_is_told(store):
    told = Told()
    follower = RegistryFollower(KafkaSettings(), told)
    v1 = version_of(small_model(0), 1, store)
    first = follower.read(records(v1), {})
    other = replace(version_of(small_model(1), 1, store), reason="another artifact")
    garbage = SourceRecord(b"m:2", b"\x00garbage", "t.model-versions", 0, 2, 0)
    later = follower.read([*records(other, start=1), garbage], {})
    assert later.revision == first.revision and later.get("m", 1).sha256 == v1.sha256
    assert told.refusals == [(1, "version-conflict"), (2, "corrupt")]


def test_catch_up_returns_a_snapshot_with_everything_published_before_the_call(kafka, store):
    create_topics(kafka)
    publish(kafka, [version_of(small_model(), 1, store)])
    with following(kafka) as follower:
        assert follower.catch_up().serving("m").version == 1
        producer = make_sender(kafka)
        for number in (2, 3, 4):
            publish(kafka, [version_of(small_model(number), number, store, status=Status.CANDIDATE)], producer)
            snapshot = follower.catch_up()
            assert snapshot.has("m", number) and snapshot.revision == number and snapshot.complete
    assert set(snapshot.read_to) == set(follower.partitions)


def test_the_follower_reads_committed_records_only(kafka, store):
    """A version record in a transaction that aborted is never folded."""
    create_topics(kafka)
    producer = Producer(confluent_config(kafka, {"transactional.id": f"{kafka.topic_prefix}aborts"}))
    producer.init_transactions()
    producer.begin_transaction()
    aborted = version_of(small_model(), 1, store)
    producer.produce(kafka.topic(Topic.MODEL_VERSIONS), key=aborted.key, value=VERSIONS.encode(aborted.to_record()))
    producer.flush()
    producer.abort_transaction()
    publish(kafka, [version_of(small_model(1), 2, store)])
    with following(kafka) as follower:
        snapshot = follower.catch_up()
    assert [v.version for v in snapshot.versions("m")] == [2] and snapshot.revision == 1


def test_catch_up_says_when_the_follower_does_not_get_there():
    with pytest.raises(TimeoutError, match="not read to its end"):
        RegistryFollower(KafkaSettings()).catch_up(0.01)
