"""The batch loop with the in-memory source and output: commits, transactions of several batches,
aborted commits, failures, readiness, outputs too large or refused, and records that kill the worker."""

import contextlib
import random
import threading
from collections import Counter

import pytest

from loopline.codec import Codec
from loopline.join.core import JoinCore
from loopline.kafka.crashes import Track
from loopline.kafka.loop import BatchLoop
from loopline.kafka.offsets import next_offsets
from loopline.records import Produced, SourceRecord, Topic
from loopline.settings import KafkaSettings
from loopline.sink.core import SinkCore
from loopline.state.state import State
from loopline.state.store import MemoryStore
from loopline.testing import MemoryChangelog, MemoryOutput, MemorySource
from tests.join.test_core import CLASSES, T0, TOPICS, Stream

NEVER = threading.Event()
LETTERS = Codec.load("dead_letter")
SPANS = pytest.mark.parametrize("interval", [0.0, 60.0], ids=["a transaction per batch", "full batches share one"])


def records(count, partitions=2):
    return [
        SourceRecord(f"k{i}".encode(), f"v{i}".encode(), "in", i % partitions, i // partitions, i) for i in range(count)
    ]


def relay(batch):
    out = Produced()
    out.extend(Topic.PREDICTIONS, [(r.key, r.value) for r in batch])
    return out


def drain(loop, source, limit=1000):
    """As ``BatchLoop.run`` until the source has nothing more: an empty take commits the open transaction."""
    for _ in range(limit):
        batch = loop.take()
        if not batch:
            if loop.close_span(NEVER):
                return
            continue
        loop.step(batch, NEVER)
    raise AssertionError("the source never drained")


def letters(output):
    return [LETTERS.decode(value) for _, value in output.to(Topic.DEAD_LETTERS)]


def test_each_batch_commits_its_outputs_and_the_offsets_after_it():
    source = MemorySource(records(10))
    output = MemoryOutput(source)
    loop = BatchLoop("relay", source, output, relay, max_batch=4, max_wait_s=0)
    drain(loop, source)
    assert output.to(Topic.PREDICTIONS) == [(f"k{i}".encode(), f"v{i}".encode()) for i in range(10)]
    assert {tp: offset for tp, (offset, _) in source.committed.items()} == {("in", 0): 5, ("in", 1): 5}
    assert {meta for _, meta in source.committed.values()} == {""}  # progress cleared the life count
    assert output.attempts == 3


def test_an_aborted_commit_reads_the_batch_again_and_commits_it_once():
    source = MemorySource(records(20))
    output = MemoryOutput(source, abort=[1, 2, 4])
    loop = BatchLoop("relay", source, output, relay, max_batch=3, max_wait_s=0)
    drain(loop, source)
    values = [value for _, value in output.to(Topic.PREDICTIONS)]
    assert sorted(values) == sorted(f"v{i}".encode() for i in range(20))  # every record once
    assert output.attempts == 7 + 3


def test_a_failing_core_dead_letters_the_batch_and_the_loop_goes_on():
    calls = []

    def flaky(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise ValueError("boom")
        return relay(batch)

    def observe(out):  # as the agents' metrics do: they read the figures of their core's own output type
        assert not out.dead_letters
        observed.append(len(out))

    observed: list[int] = []
    source = MemorySource(records(6))
    output = MemoryOutput(source)
    drain(BatchLoop("relay", source, output, flaky, max_batch=3, max_wait_s=0, observe=observe), source)
    letters = [Codec.load("dead_letter").decode(value) for _, value in output.to(Topic.DEAD_LETTERS)]
    assert [(d["source_offset"], d["reason"], d["agent"]) for d in letters] == [
        (0, "internal-error", "relay"), (0, "internal-error", "relay"), (1, "internal-error", "relay")
    ]  # fmt: skip
    assert "boom" in letters[0]["error"]
    assert len(output.to(Topic.PREDICTIONS)) == 3
    assert observed == [3]  # the failed batch's dead letters are not the core's output: not observed


def test_run_takes_nothing_until_ready_and_closes_both_ends_on_stop():
    source = MemorySource(records(4))
    output = MemoryOutput(source)
    ready = threading.Event()
    stop = threading.Event()
    loop = BatchLoop("relay", source, output, relay, max_batch=10, max_wait_s=0, ready=ready.is_set)
    thread = threading.Thread(target=loop.run, args=(stop,))
    thread.start()
    try:
        assert not source.position and output.attempts == 0
        ready.set()
        deadline = threading.Event()
        while not source.drained and not deadline.wait(0.01):
            pass
    finally:
        stop.set()
        thread.join(10)
    assert len(output.to(Topic.PREDICTIONS)) == 4
    assert source.closed and output.closed


def test_batches_share_one_transaction_while_a_full_batch_waits_behind_them():
    source = MemorySource(records(14))
    output = MemoryOutput(source)
    drain(BatchLoop("relay", source, output, relay, max_batch=4, max_wait_s=0, commit_interval_s=60), source)
    assert output.to(Topic.PREDICTIONS) == [(f"k{i}".encode(), f"v{i}".encode()) for i in range(14)]
    assert {tp: offset for tp, (offset, _) in source.committed.items()} == {("in", 0): 7, ("in", 1): 7}
    assert (output.attempts, output.transactions) == (4, 2)  # 4 + 4 + 4 (2 left behind them), then 2


def test_a_transaction_past_its_interval_is_committed_with_the_next_batch():
    source = MemorySource(records(12))
    output = MemoryOutput(source)
    loop = BatchLoop("relay", source, output, relay, max_batch=2, max_wait_s=0, commit_interval_s=60)
    loop.step(loop.take(), NEVER)
    assert loop.span is not None and output.transactions == 0
    loop.span.started -= 60
    loop.step(loop.take(), NEVER)
    assert loop.span is None and output.transactions == 1 and source.committed[("in", 1)][0] == 2


def test_an_aborted_transaction_of_several_batches_is_read_again_batch_by_batch():
    source = MemorySource(records(12))
    output = MemoryOutput(source, abort=[2])  # the third batch, which closes the transaction
    drain(BatchLoop("relay", source, output, relay, max_batch=4, max_wait_s=0, commit_interval_s=60), source)
    assert output.to(Topic.PREDICTIONS) == [(f"k{i}".encode(), f"v{i}".encode()) for i in range(12)]
    assert (output.attempts, output.transactions) == (6, 3)


def test_the_transaction_is_committed_before_partitions_are_handed_back():
    source = MemorySource(records(12))
    output = MemoryOutput(source)
    heard = []
    source.on_revoke = lambda partitions, lost: heard.append(output.transactions)
    loop = BatchLoop("relay", source, output, relay, max_batch=4, max_wait_s=0, commit_interval_s=60)
    loop.step(loop.take(), NEVER)
    assert output.transactions == 0
    source.on_revoke(source.partitions, False)  # a rebalance, inside the next take
    assert heard == [1] and loop.span is None
    assert {tp: offset for tp, (offset, _) in source.committed.items()} == {("in", 0): 2, ("in", 1): 2}


def test_next_offsets_is_one_after_the_last_record_of_each_partition():
    assert next_offsets(records(5)) == {("in", 0): (3, ""), ("in", 1): (2, "")}


def join_loop(source, output, max_batch, process=None, **kwargs):
    """The join's batch loop on in-memory state logged to ``output``'s changelog (``process`` wraps the core's)."""
    state = State("join", lambda partition: MemoryStore(), output.changelog)
    core = JoinCore(TOPICS, lambda m, v: CLASSES[(m, v)], state, 3_600_000, 10_000, quality_window=100)
    source.on_assign, source.on_revoke = core.assigned, core.revoked
    work = process(core.process) if process is not None else core.process
    return BatchLoop("join", source, output, work, max_batch=max_batch, max_wait_s=0, state=state, **kwargs)


@SPANS
def test_the_join_sends_one_outcome_per_event_through_aborted_commits(interval):
    stream = Stream()
    events = [f"e{i}" for i in range(60)]
    parts = [record for event_id in events for record in stream.event(event_id)]
    random.Random(3).shuffle(parts)
    source = MemorySource(sorted(parts, key=lambda r: r.offset))
    output = MemoryOutput(source, abort=[2, 5, 6, 9])
    drain(join_loop(source, output, max_batch=7, commit_interval_s=interval), source)
    outcomes = [Codec.load("outcome").decode(value)["event_id"] for _, value in output.to(Topic.OUTCOMES)]
    assert sorted(outcomes) == sorted(events)
    assert output.changelog.log  # the entries that waited across batches were logged


@SPANS
def test_a_restarted_join_restores_its_state_and_sends_each_outcome_once(interval):
    stream = Stream()
    events = [f"e{i}" for i in range(40)]
    parts = sorted((r for e in events for r in stream.event(e)), key=lambda r: r.offset)
    labels_late = [r for r in parts if r.topic != "l"] + [r for r in parts if r.topic == "l"]
    records = [r._replace(offset=i) for i, r in enumerate(labels_late)]  # one partition order: labels come last
    changelog, committed, outcomes = MemoryChangelog(), {}, []
    for cut in (25, 50, 80, len(records)):  # each life ends (abruptly) after the first ``cut`` records
        source = MemorySource(records[:cut], committed=committed)
        output = MemoryOutput(source, changelog=changelog)
        drain(join_loop(source, output, max_batch=6, commit_interval_s=interval), source)
        committed = source.committed
        outcomes += [Codec.load("outcome").decode(v)["event_id"] for _, v in output.to(Topic.OUTCOMES)]
    assert sorted(outcomes) == sorted(events)


def relay_with_sources(batch):
    out = Produced()
    for record in batch:
        out.send(Topic.PREDICTIONS, record.key, record.value, source=record)
    return out


@SPANS
@pytest.mark.parametrize("core", [relay_with_sources, relay], ids=["the core names the input", "it does not"])
def test_an_output_over_the_limit_is_replaced_by_a_dead_letter_of_its_input_and_the_rest_is_sent_once(core, interval):
    big = {3, 11}
    batch = [
        SourceRecord(f"k{i}".encode(), (b"x" * 5000 if i in big else f"v{i}".encode()), "in", i % 2, i // 2, i)
        for i in range(16)
    ]
    source = MemorySource(batch)
    output = MemoryOutput(source)
    loop = BatchLoop("relay", source, output, core, max_batch=4, max_wait_s=0, max_record_bytes=4096,
                     commit_interval_s=interval)  # fmt: skip
    drain(loop, source)
    assert sorted(k for k, _ in output.to(Topic.PREDICTIONS)) == sorted(
        f"k{i}".encode() for i in range(16) if i not in big
    )
    dead = letters(output)
    assert sorted((d["key"], d["reason"]) for d in dead) == [(b"k11", "too-large"), (b"k3", "too-large")]
    error = next(d["error"] for d in dead if d["key"] == b"k3")
    assert "would be 5002 bytes" in error and "at most 4096" in error
    assert {tp: offset for tp, (offset, _) in source.committed.items()} == {("in", 0): 8, ("in", 1): 8}


@SPANS
def test_records_the_broker_refuses_are_dead_lettered_and_the_rest_committed(interval):
    source = MemorySource(records(12))
    refuse = lambda topic, key, value: "Broker: Message size too large" if value in (b"v4", b"v9") else None  # noqa: E731
    output = MemoryOutput(source, refuse=refuse)
    drain(BatchLoop("relay", source, output, relay, max_batch=3, max_wait_s=0, commit_interval_s=interval), source)
    assert sorted(v for _, v in output.to(Topic.PREDICTIONS)) == sorted(
        f"v{i}".encode() for i in range(12) if i not in (4, 9)
    )
    assert sorted((d["value"], d["reason"]) for d in letters(output)) == [
        (b"v4", "send-refused"), (b"v9", "send-refused")
    ]  # fmt: skip
    assert "Message size too large" in letters(output)[0]["error"]


def test_a_dead_letter_the_broker_refuses_stops_the_worker_with_the_reason():
    source = MemorySource(records(2))
    output = MemoryOutput(source, refuse=lambda topic, key, value: "denied" if topic is Topic.DEAD_LETTERS else None)

    def bad(batch):
        out = Produced()
        loop.dead.add(out, batch[0], "corrupt", "junk")
        return out

    loop = BatchLoop("relay", source, output, bad, max_batch=2, max_wait_s=0)
    with pytest.raises(RuntimeError, match="dead letter can't be sent"):
        drain(loop, source)


class Crash(BaseException):
    """The process dies (a segfault): nothing of the loop runs after it."""


def lives(batch, process, max_crashes=2, max_batch=4, limit=20, **source_args):
    """Run workers one after the other, each from the offsets the previous one committed, until one drains.

    Returns what every life committed, the number of lives, and the last life's source.
    """
    committed: dict = {}
    sent: dict[Topic, list] = {}
    for life in range(1, limit + 1):
        source = MemorySource(batch, committed=committed, **source_args)
        output = MemoryOutput(source)
        loop = BatchLoop("relay", source, output, process, max_batch=max_batch, max_wait_s=0, max_crashes=max_crashes)
        try:
            drain(loop, source)
            done = True
        except Crash:
            done = False
        committed = source.committed
        for topic, pairs in output.records.items():
            sent.setdefault(topic, []).extend(pairs)
        if done:
            return sent, life, source
    raise AssertionError("the workers never got past the poison pill")


def test_a_record_that_kills_every_worker_is_dead_lettered_after_max_crashes_and_the_rest_served_once():
    batch = records(24)
    pill = batch[13]  # partition 1, offset 6

    def dies_on_the_pill(records):
        if pill in records:
            raise Crash
        return relay(records)

    sent, count, source = lives(batch, dies_on_the_pill, max_crashes=2)
    served = Counter(value for _, value in sent[Topic.PREDICTIONS])
    assert set(served) == {r.value for r in batch} - {pill.value} and set(served.values()) == {1}
    dead = [LETTERS.decode(value) for _, value in sent[Topic.DEAD_LETTERS]]
    assert [(d["value"], d["reason"], d["source_partition"], d["source_offset"]) for d in dead] == [
        (pill.value, "poison-pill", 1, 6)
    ]
    # one death unmarked, two counted (max_crashes), one more while it was read alone, then the life that skips it
    assert count == 5
    assert source.committed[("in", 1)] == (12, "")  # past the careful records: the count is cleared


def test_a_worker_killed_once_now_and_then_loses_nothing_and_dead_letters_nothing():
    batch = records(30)
    kills = iter([True, False, True, False, False, True])

    def killed_sometimes(records):
        if next(kills, False):
            raise Crash
        return relay(records)

    sent, _, _ = lives(batch, killed_sometimes, max_crashes=2)
    assert sorted(v for _, v in sent[Topic.PREDICTIONS]) == sorted(r.value for r in batch)
    assert Topic.DEAD_LETTERS not in sent


def test_the_join_skips_a_poison_pill_on_every_replay_and_sends_each_outcome_once():
    stream = Stream()
    events = [f"e{i}" for i in range(30)]
    parts = sorted((r for e in events for r in stream.event(e)), key=lambda r: r.offset)
    pill = next(r for r in parts if r.topic == "l" and r.key == b"e12")

    def crashing(process):
        def run(records):
            if pill in records:
                raise Crash
            return process(records)

        return run

    committed: dict = {}
    changelog = MemoryChangelog()
    outcomes: list = []
    dead: list = []
    for _ in range(4):  # the lives: each one restores the state and reads on from the commit
        source = MemorySource(parts, committed=committed)
        output = MemoryOutput(source, changelog=changelog)
        loop = join_loop(source, output, max_batch=8, process=crashing, max_crashes=1)
        with contextlib.suppress(Crash):
            drain(loop, source)
        committed = source.committed
        outcomes += [Codec.load("outcome").decode(v)["event_id"] for _, v in output.to(Topic.OUTCOMES)]
        dead += letters(output)
    assert sorted(outcomes) == sorted(set(events) - {"e12"})  # each once, across every life
    assert [(d["source_topic"], d["source_offset"], d["reason"]) for d in dead] == [("l", pill.offset, "poison-pill")]


MIB = 1 << 20


def test_records_near_the_16_mib_limit_stop_neither_the_join_nor_the_sink():
    stream = Stream()
    limit = 16 * MIB - 512  # what the topics take, less Kafka's headers
    events = [f"e{i}" for i in range(6)]
    before = [r for e in events[:3] for r in stream.event(e)]
    garbage = SourceRecord(b"junk", b"\x00" * (16 * MIB - 100), "l", 0, next(stream.offsets), T0)
    wide_value = Codec.load("features").encode(
        {"event_id": "wide", "event_time": T0, "entity_id": "u" * (16 * MIB - 540), "values": [1.0, 2.0]}
    )  # fits; its outcome (the features, the prediction and the label) does not
    wide = [SourceRecord(b"wide", wide_value, "f", 0, next(stream.offsets), T0),
            stream.record("p", "wide", 0), stream.record("l", "wide", 0)]  # fmt: skip
    records = [*before, garbage, *wide, *[r for e in events[3:] for r in stream.event(e)]]
    source = MemorySource(records)
    output = MemoryOutput(source, refuse=lambda t, k, v: "too large" if len(k) + len(v) > limit else None)
    drain(join_loop(source, output, max_batch=5), source)
    assert sorted(Codec.load("outcome").decode(v)["event_id"] for _, v in output.to(Topic.OUTCOMES)) == sorted(
        set(events) - {"wide"}
    )
    dead = {(d["source_offset"], d["reason"]) for d in letters(output)}
    assert dead == {(garbage.offset, "corrupt"), (wide[0].offset, "too-large")}  # the join can't hold the features
    assert max(len(v) for _, v in output.to(Topic.DEAD_LETTERS)) < 70 * 1024

    sink_source = MemorySource([garbage._replace(topic="t.labels")])
    sink_output = MemoryOutput(sink_source, refuse=lambda t, k, v: "too large" if len(k) + len(v) > limit else None)
    core = SinkCore(KafkaSettings(topic_prefix="t."))
    drain(BatchLoop("sink", sink_source, sink_output, core.rows, max_batch=10, max_wait_s=0), sink_source)
    assert [(d["reason"], len(d["value"])) for d in letters(sink_output)] == [("corrupt", 64 * 1024)]
    assert sink_source.committed[("t.labels", 0)][0] == garbage.offset + 1


def test_a_record_read_alone_is_no_longer_in_flight_once_done_even_where_the_core_commits_nothing():
    batch = records(6, partitions=1)
    committed = {("in", 0): (0, "|loop:lives=2")}  # two lives died here: the next one reads alone

    def holds_everything(records):  # like the join while it catches up: outputs, but no commit yet
        out = relay(records)
        out.offsets = {}
        return out

    source = MemorySource(batch, committed=committed)
    output = MemoryOutput(source)
    loop = BatchLoop("relay", source, output, holds_everything, max_batch=4, max_wait_s=0, max_crashes=2)
    flights = []
    output.mark = lambda offsets, stop: (
        flights.extend(tp.metadata for tp in offsets),
        MemoryOutput.mark(output, offsets, stop),
    )
    drain(loop, source)
    assert flights == [
        "|loop:lives=3;careful=4",  # this life counted: it takes the next 4 records alone
        *(m for i in range(4) for m in (
            f"|loop:{f'read={i};' if i else ''}lives=3;careful={4 - i};at={i}",  # record i in flight
            f"|loop:read={i + 1};lives=3;careful={3 - i}" if i < 3 else "|loop:read=4",  # done, at the same offset
        )),
    ]  # fmt: skip
    offset, meta = source.committed[("in", 0)]
    assert offset == 0 and Track.parse(offset, meta).pills == set()
    assert len(output.to(Topic.PREDICTIONS)) == 6


def test_a_worker_that_hands_its_partitions_back_cleanly_takes_its_life_back():
    batch = records(4, partitions=1)
    source = MemorySource(batch, committed={("in", 0): (0, "|loop:lives=1")})  # one life died here before
    output = MemoryOutput(source)
    loop = BatchLoop("relay", source, output, lambda records: Produced(offsets={}), max_batch=4, max_wait_s=0)
    loop.step(loop.take(), NEVER)  # the core commits nothing yet (a join catching up): the count stands
    assert source.committed[("in", 0)] == (0, "|loop:lives=2")
    source.on_revoke([("in", 0)], False)  # a rebalance takes the partition away
    assert source.committed[("in", 0)] == (0, "|loop:read=4;lives=1")  # as it was, but for what was read
