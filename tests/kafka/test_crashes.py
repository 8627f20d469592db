"""The crash count alone, one worker life after the other through the in-memory source and output:
lives counted in the commit metadata, records taken one at a time after ``max_crashes`` lives, the
record in flight dead-lettered by the next life, and progress or a clean hand-back that clear it."""

import threading

from loopline.kafka.crashes import MAX_PILLS, Crashes, Track
from loopline.kafka.offsets import next_offsets
from loopline.records import SourceRecord
from loopline.testing import MemoryOutput, MemorySource

NEVER = threading.Event()
TP = ("in", 0)


def records(count, partitions=1):
    return [
        SourceRecord(f"k{i}".encode(), f"v{i}".encode(), "in", i % partitions, i // partitions, i) for i in range(count)
    ]


def life(source, max_crashes=2, max_batch=3):
    """A new worker on what ``source`` committed, counted on its first batch (the source's records), as the loop
    does before it processes them; the count's commits go through a :class:`MemoryOutput`."""
    crashes = Crashes("test", max_crashes, max_batch)
    crashes.assigned({tp: source.committed.get(tp, (-1, "")) for tp in source.partitions})
    MemoryOutput(source).mark(crashes.count(crashes.uncounted(source.records)), NEVER)
    return crashes


def test_the_metadata_keeps_the_cores_and_the_fields_in_use_and_parses_back():
    track = Track(committed=5, meta="core", read=7, lives=2, careful=3, pills={3, 6, 9})
    metadata = track.metadata(at=8)
    assert metadata == "core|loop:read=7;lives=2;careful=3;at=8;pills=6,9"  # pill 3 is behind the commit
    back = Track.parse(5, metadata)
    assert back == Track(committed=5, meta="core", read=7, start=7, lives=2, careful=3, pills={6, 8, 9})
    assert Track(committed=4, meta="core").metadata() == "core"  # no count: the core's metadata alone
    assert Track.parse(-1, "") == Track()
    newest = ",".join(map(str, range(100 - MAX_PILLS, 100)))
    assert Track(committed=0, pills=set(range(100))).metadata() == f"|loop:pills={newest}"  # the newest kept


def test_each_life_is_counted_once_on_each_partition_it_processes():
    source = MemorySource(records(4, partitions=2))
    crashes = life(source)
    assert source.committed == {("in", 0): (0, "|loop:lives=1"), ("in", 1): (0, "|loop:lives=1")}
    assert crashes.uncounted(source.records) == {}  # counted already in this life
    life(source)
    assert source.committed[TP] == (0, "|loop:lives=2")


def test_without_max_crashes_nothing_is_counted():
    crashes = Crashes("test", 0, 3)
    assert crashes.uncounted(records(3)) == {}
    assert crashes.tracks == {TP: Track()} and not crashes.suspects


def test_after_max_crashes_a_life_takes_max_batch_records_alone_and_the_next_dead_letters_the_one_in_flight():
    batch = records(5)
    source = MemorySource(batch, committed={TP: (0, "|loop:lives=2")})  # two lives ended here
    crashes = life(source, max_crashes=2, max_batch=3)
    assert source.committed[TP] == (0, "|loop:lives=3;careful=3")
    assert crashes.suspects and crashes.in_doubt(batch[0])
    MemoryOutput(source).mark([crashes.in_flight(batch[0])], NEVER)  # then the worker dies in it
    assert source.committed[TP] == (0, "|loop:lives=3;careful=3;at=0")

    after = life(source, max_crashes=2, max_batch=3)
    assert [after.is_pill(r) for r in batch] == [True, False, False, False, False]
    [(pill, error)] = after.letters([batch[0]])
    assert pill == batch[0] and "died processing this record alone" in error
    assert source.committed[TP] == (0, "|loop:lives=4;careful=3;pills=0")


def test_a_pill_behind_where_this_life_started_was_dead_lettered_before():
    source = MemorySource(records(8), committed={TP: (0, "|loop:read=5;pills=3")})  # a core that commits below
    crashes = life(source)
    assert crashes.is_pill(source.records[3]) and crashes.letters([source.records[3]]) == []


def test_a_commit_that_gets_further_clears_the_count_once_it_landed():
    batch = records(4)
    source = MemorySource(batch, committed={TP: (0, "|loop:lives=1")})
    crashes = life(source)
    held = crashes.after({}, batch)  # the core commits nothing yet: no progress
    assert held[TP].lives == 2 and held[TP].read == 4
    after = crashes.after(next_offsets(batch[:2]), batch[:2])
    assert after[TP].metadata() == "" and after[TP].committed == 2
    assert crashes.tracks[TP].lives == 2  # not before it landed
    crashes.committed(after)
    assert crashes.tracks[TP] == after[TP]


def test_the_records_taken_alone_are_counted_down_by_their_commits():
    batch = records(5)
    source = MemorySource(batch, committed={TP: (0, "|loop:lives=2")})
    crashes = life(source, max_crashes=2, max_batch=3)
    for record in batch[:3]:
        crashes.committed(crashes.after(next_offsets([record]), [record]))
    assert not crashes.suspects and not crashes.in_doubt(batch[3]) and crashes.tracks[TP].lives == 0


def test_a_record_taken_alone_commits_its_partition_where_the_core_commits_nothing():
    batch = records(3)
    crashes = life(MemorySource(batch, committed={TP: (0, "core|loop:lives=2")}))
    assert crashes.landed(batch[0], {}) == {TP: (0, "core")}
    assert crashes.landed(batch[0], {TP: (1, "")}) == {TP: (1, "")}  # the core's commit says it


def test_a_worker_that_hands_a_partition_back_cleanly_takes_its_life_back():
    source = MemorySource(records(4, partitions=2), committed={("in", 0): (0, "|loop:lives=1")})
    crashes = life(source)
    undo = crashes.revoked([("in", 0)])
    assert [(tp.topic, tp.partition, tp.offset, tp.metadata) for tp in undo] == [("in", 0, 0, "|loop:lives=1")]
    assert ("in", 0) not in crashes.tracks and ("in", 1) in crashes.tracks
    assert crashes.revoked([("in", 0)]) == []  # forgotten: nothing more to take back
