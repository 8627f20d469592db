"""The batch loop with the in-memory source and output: commits, aborted commits, failures, readiness."""

import random
import threading

from streams.agents.join import JoinWiring
from streams.codec import Codec
from streams.join.core import JoinCore
from streams.kafka.loop import BatchLoop, next_offsets
from streams.kafka.testing import MemoryOutput, MemorySource
from streams.records import Produced, SourceRecord, Topic
from tests.join.test_core import CLASSES, TOPICS, Stream

NEVER = threading.Event()


def records(count, partitions=2):
    return [
        SourceRecord(f"k{i}".encode(), f"v{i}".encode(), "in", i % partitions, i // partitions, i) for i in range(count)
    ]


def relay(batch):
    out = Produced()
    out.extend(Topic.PREDICTIONS, [(r.key, r.value) for r in batch])
    return out


def drain(loop, source, limit=1000):
    for _ in range(limit):
        batch = source.take(loop.max_batch, loop.max_wait_s)
        if not batch:
            return
        loop.step(batch, NEVER)
    raise AssertionError("the source never drained")


def test_each_batch_commits_its_outputs_and_the_offsets_after_it():
    source = MemorySource(records(10))
    output = MemoryOutput(source)
    loop = BatchLoop("relay", source, output, relay, max_batch=4, max_wait_s=0)
    drain(loop, source)
    assert output.to(Topic.PREDICTIONS) == [(f"k{i}".encode(), f"v{i}".encode()) for i in range(10)]
    assert source.committed == {("in", 0): (5, ""), ("in", 1): (5, "")}
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

    source = MemorySource(records(6))
    output = MemoryOutput(source)
    drain(BatchLoop("relay", source, output, flaky, max_batch=3, max_wait_s=0), source)
    letters = [Codec.load("dead_letter").decode(value) for _, value in output.to(Topic.DEAD_LETTERS)]
    assert [(d["source_offset"], d["reason"], d["agent"]) for d in letters] == [
        (0, "internal-error", "relay"), (0, "internal-error", "relay"), (1, "internal-error", "relay")
    ]  # fmt: skip
    assert "boom" in letters[0]["error"]
    assert len(output.to(Topic.PREDICTIONS)) == 3


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


def test_a_backlog_shares_one_commit_and_a_caught_up_batch_commits_at_once():
    source = MemorySource(records(10))
    output = MemoryOutput(source)
    loop = BatchLoop("relay", source, output, relay, max_batch=3, max_wait_s=0, commit_interval_s=60)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,))
    thread.start()
    try:
        while not source.committed and thread.is_alive():
            stop.wait(0.01)
    finally:
        stop.set()
        thread.join(10)
    assert output.attempts == 1  # batches of 3, 3, 3 and 1: the short one closes the commit
    assert len(output.to(Topic.PREDICTIONS)) == 10
    assert source.committed == {("in", 0): (5, ""), ("in", 1): (5, "")}


def test_next_offsets_is_one_after_the_last_record_of_each_partition():
    assert next_offsets(records(5)) == {("in", 0): (3, ""), ("in", 1): (2, "")}


def test_the_join_wiring_sends_one_outcome_per_event_through_aborted_commits():
    stream = Stream()
    events = [f"e{i}" for i in range(60)]
    parts = [record for event_id in events for record in stream.event(event_id)]
    random.Random(3).shuffle(parts)
    wiring = JoinWiring(JoinCore(TOPICS, lambda m, v: CLASSES[(m, v)], 3_600_000, 10_000, quality_window=100))
    source = MemorySource(sorted(parts, key=lambda r: r.offset), wiring.assigned, wiring.revoked)
    output = MemoryOutput(source, abort=[2, 5, 6, 9])
    drain(BatchLoop("join", source, output, wiring.process, max_batch=7, max_wait_s=0), source)
    outcomes = [Codec.load("outcome").decode(value)["event_id"] for _, value in output.to(Topic.OUTCOMES)]
    assert sorted(outcomes) == sorted(events)
