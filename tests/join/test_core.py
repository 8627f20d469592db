import itertools
import math

import pytest

from loopline.codec import Codec
from loopline.join.core import JoinCore, JoinTopics
from loopline.records import SourceRecord, Topic
from loopline.state.state import State
from loopline.state.store import DiskStore, MemoryStore
from loopline.testing import MemoryChangelog

TOPICS = JoinTopics("f", "p", "sp", "l")
HOUR = 3_600_000
T0 = 1_795_000_000_000
CLASSES = {("m", 1): ["no", "yes"], ("m", 2): ["no", "yes"]}
CODECS = {"f": Codec.load("features"), "p": Codec.load("prediction"), "sp": Codec.load("prediction"),
          "l": Codec.load("label"), "o": Codec.load("outcome"), "dl": Codec.load("dead_letter")}  # fmt: skip


class Stream:
    """Records of the four topics with running offsets; every event's timestamp is its arrival time."""

    def __init__(self):
        self.offsets = itertools.count()

    def record(self, topic, event_id, at, **fields):
        value = CODECS[topic].encode(self.value(topic, event_id, **fields))
        return SourceRecord(event_id.encode(), value, topic, 0, next(self.offsets), T0 + at)

    @staticmethod
    def value(topic, event_id, label="yes", version=1, yes=0.8, label_time=T0 + 5000):
        if topic == "f":
            return {"event_id": event_id, "event_time": T0, "entity_id": "u", "values": [1.0, 2.0]}
        if topic == "l":
            return {"event_id": event_id, "event_time": label_time, "label": label}
        return {
            "event_id": event_id, "event_time": T0, "prediction_time": T0 + 7, "entity_id": "u",
            "model_name": "m", "model_version": version, "shadow": topic == "sp", "scores": [1 - yes, yes],
            "predicted_class": "yes" if yes >= 0.5 else "no", "queue_wait_ms": 1.0, "inference_ms": 0.5,
        }  # fmt: skip

    def event(self, event_id, at=0, **fields):
        return [self.record(t, event_id, at, **fields) for t in ("f", "p", "l")]


NOW = T0 + 24 * HOUR  # the workers' wall clock in these tests
DAY = 24 * HOUR


class Worker:
    """A join core on in-memory state, committing each batch's changes to a changelog as the batch loop does."""

    def __init__(self, changelog=None, partitions=(0,), ttl_ms=HOUR, max_pending=10_000, now=NOW, **kwargs):
        self.changelog = changelog or MemoryChangelog()
        self.state = State("join", lambda p: MemoryStore(), self.changelog)
        self.state.assign(partitions)
        self.core = JoinCore(TOPICS, lambda m, v: CLASSES[(m, v)], self.state, ttl_ms, max_pending,
                             quality_window=100, max_skew_ms=300_000, clock_ms=lambda: now, **kwargs)  # fmt: skip
        self.core.assigned({("f", partition): (0, "") for partition in partitions})

    def process(self, records):
        out = self.core.process(records)
        for partition, changes in self.state.changes().items():
            self.changelog.log.setdefault(partition, []).extend(changes.items())
        self.state.committed()
        return out

    def held(self, partition=0):
        """The event ids held."""
        return sorted(key[1:].decode() for key, _ in self.state.items(partition) if key.startswith(b"e"))

    @property
    def now_ms(self):
        return self.core.now_ms


def core(ttl_ms=HOUR, max_pending=10_000, now=NOW):
    return Worker(ttl_ms=ttl_ms, max_pending=max_pending, now=now)


def dead(out):
    return [CODECS["dl"].decode(value) for _, value in out.dead_letters]


def outcomes(out):
    return [CODECS["o"].decode(value) for _, value in out.outcomes]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_every_arrival_order_joins_once(order):
    stream = Stream()
    records = stream.event("e1")
    join = core()
    got = [outcomes(join.process([records[i]])) for i in order]
    assert [len(g) for g in got] == [0, 0, 1]
    outcome = got[-1][0]
    assert outcome["event_id"] == "e1" and outcome["label"] == "yes" and outcome["correct"]
    assert outcome["values"] == [1.0, 2.0] and outcome["model_version"] == 1
    assert outcome["prediction_delay_ms"] == 7 and outcome["label_delay_ms"] == 5000
    assert outcome["log_loss"] == pytest.approx(-math.log(0.8), rel=1e-6)


def test_outcomes_are_keyed_by_model_name():
    out = core().process(Stream().event("e1"))
    assert [key for key, _ in out.outcomes] == [b"m"]


def test_repeated_parts_of_a_waiting_event_make_no_second_outcome():
    stream = Stream()
    f, p, label = stream.event("e1")
    join = core()
    out = join.process([f, p, stream.record("f", "e1", 5), stream.record("p", "e1", 5), label])
    assert len(out.outcomes) == 1 and out.duplicates == 2


def test_an_entry_is_deleted_once_its_outcomes_are_sent():
    stream = Stream()
    join = core()
    join.process([*stream.event("a"), stream.record("f", "b", 0)])
    assert join.held() == ["b"]
    assert {key[:1] for key, _ in join.state.items(0)} == {b"e", b"t"}
    assert [key[:1] for key, _ in join.changelog.log[0]] == [b"e"]  # the expiry index is not logged
    join.process([stream.record("p", "b", 1), stream.record("l", "b", 2)])
    assert join.held() == [] and list(join.state.items(0)) == []
    logged = len(join.changelog.log[0])
    join.process(stream.event("c"))  # begun and done in one batch: nothing to log
    assert len(join.changelog.log[0]) == logged


def test_serving_and_shadow_predictions_each_make_one_outcome():
    stream = Stream()
    records = [*stream.event("e1"), stream.record("sp", "e1", 0, version=2, yes=0.3)]
    got = outcomes(core().process(records))
    assert sorted((o["shadow"], o["model_version"], o["correct"]) for o in got) == [(False, 1, True), (True, 2, False)]


@pytest.mark.parametrize("order", [("f", "p", "l"), ("l", "f", "p"), ("p", "l", "f")])
def test_a_label_that_is_not_one_of_the_versions_classes_is_dead_lettered_not_scored(order):
    stream = Stream()
    good = stream.event("e1")
    bad = {t: stream.record(t, "e2", 0, label="True") for t in order}
    join = core()
    outs = [join.process(good)] + [join.process([bad[t]]) for t in order]
    assert [o["event_id"] for out in outs for o in outcomes(out)] == ["e1"]  # no outcome scored wrong
    letters = [d for out in outs for d in dead(out)]
    assert [(d["reason"], d["source_topic"], d["source_offset"], d["key"]) for d in letters] == [
        ("unknown-label", "l", bad["l"].offset, b"e2")
    ]
    assert "'True'" in letters[0]["error"] and "['no', 'yes']" in letters[0]["error"]
    assert outs[-1].label_rates == {}  # the bad label counts neither as a label nor as a missing one
    later = join.process([stream.record("l", "e2", 10, label="yes")])  # sent again after the event was done
    assert later.outcomes == [] and later.pending == 1  # it waits alone (and expires)


def test_an_unknown_label_is_not_dead_lettered_again_after_a_restart():
    stream = Stream()
    records = stream.event("e1", label="maybe")
    first = core()
    assert [d["reason"] for d in dead(first.process(records))] == ["unknown-label"]
    second = Worker(first.changelog)  # restored: the entry is gone with its outcome, nothing is read again
    assert second.held() == [] and second.process([]).dead_letters == []


def test_a_record_stamped_days_ahead_is_dead_lettered_and_moves_no_clock():
    stream = Stream()
    waiting = [stream.record(t, f"w{i}", i) for i in range(200) for t in ("f", "p")]
    join = core(ttl_ms=HOUR)
    join.process(waiting)
    future = [
        stream.record("l", "w0", 3 * DAY),  # a valid label, stamped three days ahead
        SourceRecord(b"junk", b"\x00junk", "l", 0, next(stream.offsets), NOW + 3 * DAY),  # and an undecodable one
        SourceRecord(b"junk", b"\x00junk", "f", 0, next(stream.offsets), NOW + 3 * DAY),  # a feature event too
    ]
    out = join.process(future)
    assert out.dead_reasons == ["future-timestamp"] * 3 and out.expired == {}
    assert "ahead of the join's clock" in dead(out)[0]["error"]
    assert len(join.held()) == 200 and join.now_ms == T0 + 199
    labels = [stream.record("l", f"w{i}", 300 + i) for i in range(200)]
    assert sorted(o["event_id"] for o in outcomes(join.process(labels))) == sorted(f"w{i}" for i in range(200))


def test_a_record_within_the_skew_moves_the_clock_and_one_far_in_the_past_waits_from_when_it_came():
    stream = Stream()
    join = core(ttl_ms=HOUR, now=T0 + 3 * HOUR)
    join.process([stream.record("f", "a", 0), stream.record("p", "a", 0)])
    out = join.process([stream.record("l", "c", -30 * DAY)])  # a month late: it waits like any other part
    assert out.dead_letters == [] and out.expired == {} and join.held() == ["a", "c"] and join.now_ms == T0
    tick = join.process([stream.record("f", "tick", 3 * HOUR + 4 * 60_000)])  # four minutes ahead: within the skew
    assert join.now_ms == T0 + 3 * HOUR + 4 * 60_000
    assert tick.expired == {"no-label": 1, "no-prediction": 1}
    assert [(d["reason"], d["source_offset"]) for d in dead(tick)] == [("no-prediction", 2)]  # the label, named


@pytest.mark.parametrize("stamp", [-5, 1, 31_536_000_000, T0 - 30 * DAY])  # below zero, 1 ms, 1971, a month old
@pytest.mark.parametrize("label_first", [True, False])
def test_a_label_stamped_in_the_past_joins_its_event(stamp, label_first):
    stream = Stream()
    join = core(ttl_ms=HOUR)
    join.process(stream.event("e0"))  # the join has read something: its record time is T0
    served = [stream.record("f", "e1", 0), stream.record("p", "e1", 10)]
    label = stream.record("l", "e1", 0)._replace(timestamp_ms=stamp)
    first, second = ([label], served) if label_first else (served, [label])
    outs = [join.process(first), join.process(second)]
    assert [o["event_id"] for out in outs for o in outcomes(out)] == ["e1"]
    assert all(out.dead_letters == [] and out.expired == {} for out in outs) and join.held() == []


def test_every_label_ends_as_an_outcome_or_a_dead_letter_with_a_reason():
    stream = Stream()
    join = core(ttl_ms=HOUR, max_pending=3)
    labels = [stream.record("l", f"e{i}", i) for i in range(4)]  # e0 is evicted by the fourth
    evicted = join.process(labels)
    assert [(d["reason"], d["source_offset"]) for d in dead(evicted)] == [("evicted", 0)]
    join.process([stream.record("p", "e1", 5)])  # e1 gets a prediction but never its features
    late = join.process([stream.record("f", "tick", 2 * HOUR)])
    assert sorted((d["reason"], d["source_offset"]) for d in dead(late)) == [
        ("no-features", 1), ("no-prediction", 2), ("no-prediction", 3)]  # fmt: skip
    assert late.expired == {"no-features": 1, "no-prediction": 2}


def test_a_restarted_worker_keeps_the_record_time_of_the_entries_it_restores():
    stream = Stream()
    first = Worker(ttl_ms=HOUR)
    first.process([stream.record("f", "e1", HOUR), stream.record("p", "e1", HOUR)])
    restarted = Worker(first.changelog, ttl_ms=HOUR)
    restarted.state.assign([0])
    restarted.core.assigned({("f", 0): (0, "")})
    assert restarted.now_ms == T0 + HOUR
    old = stream.record("l", "e1", 0)._replace(timestamp_ms=1)  # the first record after the restart is stamped 1 ms
    assert [o["event_id"] for o in outcomes(restarted.process([old]))] == ["e1"]


@pytest.mark.parametrize(("fields", "reason"), [
    ({"event_id": ""}, "invalid-id"),
    ({"event_id": "x" * 2000}, "invalid-id"),
    ({"event_time": 13_000_000_000_000}, "invalid-time"),
    ({"event_time": -3_000_000_000_000}, "invalid-time"),
])  # fmt: skip
def test_a_label_with_an_empty_id_or_a_time_clickhouse_cant_store_is_dead_lettered(fields, reason):
    label = {"event_id": "e1", "event_time": T0, "label": "yes"} | fields
    record = SourceRecord(b"e1", CODECS["l"].encode(label), "l", 0, 7, T0)
    join = core()
    out = join.process([*Stream().event("e1")[:2], record])
    assert out.dead_reasons == [reason] and out.outcomes == []


def test_an_outcome_names_the_record_that_completed_it_as_its_input():
    records = Stream().event("e1")
    out = core().process(records)
    assert out.source_of(Topic.OUTCOMES, 0) == records[-1]


def test_a_label_after_the_ttl_finds_no_prediction():
    stream = Stream()
    join = core(ttl_ms=HOUR)
    first = join.process([stream.record("f", "e1", 0), stream.record("p", "e1", 0)])
    late = join.process([stream.record("l", "e1", HOUR + 1)])
    assert first.outcomes == [] and late.outcomes == []
    assert late.expired == {"no-label": 1}
    assert late.label_rates == {("m", 1): 0.0}
    assert join.held() == ["e1"]  # the late label waits for a prediction of its own
    expired = join.process([stream.record("f", "x", 2 * HOUR + 2)])
    assert expired.expired == {"no-prediction": 1} and expired.dead_reasons == ["no-prediction"]


def test_a_label_within_the_ttl_joins():
    stream = Stream()
    join = core(ttl_ms=HOUR)
    join.process([stream.record("f", "e1", 0), stream.record("p", "e1", 0)])
    assert len(join.process([stream.record("l", "e1", HOUR - 1)]).outcomes) == 1


def test_state_is_bounded_by_max_pending():
    stream = Stream()
    join = core(max_pending=10)
    out = join.process([stream.record("p", f"e{i}", i) for i in range(25)])
    assert len(join.held()) == 10 and out.expired == {"evicted": 15} and out.pending == 10
    assert join.held() == sorted(f"e{i}" for i in range(15, 25))  # the oldest went


def test_max_pending_holds_across_partitions_and_evicts_the_oldest_first():
    stream = Stream()
    join = Worker(partitions=(0, 1), max_pending=6)
    records = [stream.record("p", f"e{i}", i) for i in range(10)]
    records = [r._replace(partition=i % 2) for i, r in enumerate(records)]
    out = join.process(records)
    assert out.expired == {"evicted": 4} and out.pending == 6
    assert join.held(0) + join.held(1) == ["e4", "e6", "e8", "e5", "e7", "e9"]


def test_label_rate_counts_labeled_and_expired_predictions():
    stream = Stream()
    join = core(ttl_ms=100)
    join.process([*stream.event("a"), stream.record("f", "b", 0), stream.record("p", "b", 0)])
    out = join.process([stream.record("f", "tick", 1000)])
    assert out.label_rates == {("m", 1): 0.5}


def test_bad_records_become_dead_letters():
    stream = Stream()
    unknown = stream.record("p", "e1", 0, version=9)
    garbage = SourceRecord(b"e2", b"\x00junk", "l", 0, 99, T0)
    out = core().process([unknown, garbage])
    assert out.dead_reasons == ["unknown-model-version", "corrupt"]
    assert len(out.dead_letters) == 2 and out.outcomes == []


def test_a_restored_worker_completes_the_events_its_predecessor_held_and_resends_nothing():
    stream = Stream()
    first = core()
    assert (
        len(first.process([*stream.event("a"), stream.record("f", "b", 0), stream.record("p", "b", 0)]).outcomes) == 1
    )
    second = Worker(first.changelog)  # restored from the changelog: "b" waits, "a" is gone
    assert second.held() == ["b"] and second.core.counts == {0: 1}
    assert [key[:1] for key, _ in second.state.items(0)] == [b"e", b"t"]  # the index rebuilt
    late = second.process([stream.record("l", "b", 10)])
    assert [o["event_id"] for o in outcomes(late)] == ["b"] and second.held() == []


def test_changes_of_an_aborted_batch_never_reach_the_store():
    stream = Stream()
    join = core()
    join.core.process([stream.record("f", "a", 0)])
    join.state.changes()
    join.state.discard()  # the batch's transaction was aborted
    assert join.held() == [] and join.changelog.log == {}
    assert join.process([stream.record("f", "a", 0)]).duplicates == 0  # read again, taken again


def test_a_part_that_would_make_an_entry_larger_than_a_changelog_record_is_dead_lettered():
    stream = Stream()
    join = Worker(max_entry_bytes=1000)
    big = stream.record("f", "e1", 0)._replace(value=CODECS["f"].encode(
        {"event_id": "e1", "event_time": T0, "entity_id": "u" * 2000, "values": [1.0]}))  # fmt: skip
    out = join.process([stream.record("p", "e1", 0), big])
    assert out.dead_reasons == ["too-large"] and join.held() == ["e1"]


def test_a_bad_feature_event_is_skipped_not_dead_lettered_twice():
    out = core().process([SourceRecord(b"x", b"junk", "f", 0, 0, T0)])
    assert out.skipped == 1 and out.dead_letters == []


def test_a_store_restored_from_its_checkpoint_gets_an_index_of_the_entries_it_holds_now(tmp_path):
    stream = Stream()
    changelog = MemoryChangelog()

    def on_disk(p):
        return DiskStore(tmp_path / str(p))

    first = Worker(changelog)
    first.state = State("join", on_disk, changelog)
    first.state.assign([0])
    first.core.state = first.state
    first.core.assigned({("f", 0): (0, "")})
    first.process([stream.record("f", "a", 0), stream.record("f", "b", 0)])
    first.state.revoke([0], clean=True)  # a rebalance: the store keeps a checkpoint
    other = Worker(changelog)  # the next owner completes "b" and adds "c"
    other.process([stream.record("p", "b", 1), stream.record("l", "b", 2), stream.record("f", "c", 3)])
    first.state.assign([0])  # back: the checkpoint, then the other owner's changes
    first.core.assigned({("f", 0): (0, "")})
    keys = [key for key, _ in first.state.items(0)]
    assert first.held() == ["a", "c"] and sorted(k[9:] for k in keys if k[:1] == b"t") == [b"a", b"c"]
    assert first.core.counts == {0: 2}
