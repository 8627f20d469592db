"""An agent's version lookup: the snapshot pinned per batch, and the catch-up before a batch that needs it."""

from dataclasses import replace

import pytest

from loopline.agents.versions import SnapshotLookup, VersionPeek
from loopline.codec import Codec
from loopline.models import ModelVersion, Registry, Status
from loopline.records import Produced, SourceRecord
from tests.samples import SAMPLES

BASE = replace(ModelVersion.from_record(SAMPLES["model_version"]), model_name="m", version=1, status=Status.SERVING)
PREDICTION, OUTCOME = Codec.load("prediction"), Codec.load("outcome")
PEEK = VersionPeek({"predictions": "prediction", "outcomes": "outcome"})


def snapshot(*numbers, complete=True):
    registry = Registry()
    for number in numbers:
        registry.apply(replace(BASE, version=number, event_id=f"v{number}"))
    return registry.snapshot(complete=complete)


class Follower:
    """A follower whose catch-ups return the next of ``snapshots`` (a ``TimeoutError`` for None)."""

    def __init__(self, *snapshots):
        self.snapshot, self.next, self.catch_ups = snapshots[0], list(snapshots[1:]), 0

    def catch_up(self, timeout_s):
        self.catch_ups += 1
        caught_up = self.next.pop(0)
        if caught_up is None:
            raise TimeoutError("not read to its end")
        self.snapshot = caught_up
        return caught_up


def predicted(version, offset=0):
    value = PREDICTION.encode(SAMPLES["prediction"] | {"model_name": "m", "model_version": version})
    return SourceRecord(b"e", value, "predictions", 0, offset, 0)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_batch_of_known_versions_is_looked_up_in_the_latest_snapshot_without_waiting():
    follower = Follower(snapshot(1))
    lookup = SnapshotLookup(follower, PEEK)
    lookup.pin([predicted(1)])
    assert lookup("m", 1).version == 1 and follower.catch_ups == 0


def test_a_batch_naming_a_version_the_snapshot_lacks_waits_for_the_follower_to_catch_up():
    follower = Follower(snapshot(1), snapshot(1, 2))
    lookup = SnapshotLookup(follower, PEEK)
    lookup.pin([predicted(1), predicted(2)])
    assert lookup("m", 2).version == 2 and follower.catch_ups == 1


def test_a_version_still_unknown_after_a_catch_up_is_unknown_and_waited_for_again_only_after_refresh_s():
    clock = Clock()
    follower = Follower(snapshot(1), snapshot(1), snapshot(1), snapshot(1, 9))
    lookup = SnapshotLookup(follower, PEEK, refresh_s=1.0, clock=clock)
    lookup.pin([predicted(9)])
    with pytest.raises(KeyError):
        lookup("m", 9)
    clock.now += 0.5
    lookup.pin([predicted(9)])
    assert follower.catch_ups == 1  # missed half a second ago: no second wait
    lookup.pin([predicted(8)])
    assert follower.catch_ups == 2  # another unknown version is waited for at once
    clock.now += 1.0
    lookup.pin([predicted(9)])
    assert follower.catch_ups == 3 and lookup("m", 9).version == 9


def test_the_first_batch_waits_until_the_follower_read_the_topic_to_its_end():
    """A restored join entry's prediction names a version that no record of the batch does."""
    follower = Follower(snapshot(complete=False), snapshot(1))
    lookup = SnapshotLookup(follower, PEEK)
    lookup.pin([SourceRecord(b"e", b"a label", "labels", 0, 0, 0)])
    assert follower.catch_ups == 1 and lookup("m", 1).version == 1


def test_a_catch_up_that_times_out_leaves_the_batch_on_the_latest_snapshot():
    follower = Follower(snapshot(1), None)
    lookup = SnapshotLookup(follower, PEEK)
    lookup.pin([predicted(2)])
    with pytest.raises(KeyError):
        lookup("m", 2)
    assert lookup("m", 1).version == 1


def test_the_core_reads_the_snapshot_pinned_for_its_batch_whatever_the_follower_reads_meanwhile():
    follower = Follower(snapshot(1))
    lookup = SnapshotLookup(follower, PEEK)
    registry = follower.snapshot.registry()
    registry.apply(registry.get("m", 1).with_status(Status.RETIRED, "replaced"))
    seen = []

    def core(records):
        follower.snapshot = registry.snapshot(complete=True)  # the follower folds a record while the batch runs
        seen.append(lookup("m", 1).status)
        return Produced()

    lookup.before(core)([predicted(1)])
    lookup.before(core)([predicted(1)])
    assert seen == [Status.SERVING, Status.RETIRED]  # the next batch sees it


def test_the_peek_reads_the_version_a_prediction_or_outcome_names():
    outcome = OUTCOME.encode(SAMPLES["outcome"] | {"model_name": "wide", "model_version": 70000,
                                                   "values": [0.5] * 300})  # fmt: skip
    assert PEEK(predicted(3)) == ("m", 3)
    assert PEEK(SourceRecord(b"m", outcome, "outcomes", 0, 0, 0)) == ("wide", 70000)
    assert PEEK(SourceRecord(b"e", b"\xc3\x01garbage", "predictions", 0, 0, 0)) is None
    assert PEEK(SourceRecord(b"e", PREDICTION.header + b"\x02", "predictions", 0, 0, 0)) is None  # cut short
    assert PEEK(SourceRecord(b"e", predicted(3).value, "labels", 0, 0, 0)) is None  # not a topic it reads
