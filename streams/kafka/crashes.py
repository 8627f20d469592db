"""Crash counting: a record that keeps killing the worker becomes a dead letter (``poison-pill``).

A record that kills the worker process (a segfault in a native library, an error outside the
core) would kill every restarted worker the same way. So the batch loop keeps a count in the
commit metadata of each input partition, next to the core's own: before a worker first processes
records of a partition, it commits the partition's offset unchanged with the count of worker
lives that started there plus one; a commit that gets further than the previous lives read
clears it, and a worker that hands the partition back cleanly (a rebalance, a stop) takes its own
life back. Once ``max_crashes`` lives in a row ended without getting further, the next one takes
the partition's next ``max_batch`` records one at a time, each after committing its offset as the
one in flight; the life after a crash dead-letters that record (``poison-pill``) instead of
processing it, and remembers it in the metadata until the commits pass it. The metadata reads
``<core's metadata>|loop:read=…;lives=…;careful=…;at=…;pills=…`` (only the fields in use).

:class:`Crashes` keeps that count for the partitions a worker owns and says what to commit of it;
the loop makes the commits.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from confluent_kafka import TopicPartition

from loopline.kafka.offsets import last_records
from loopline.kafka.source import Partition
from loopline.records import SourceRecord

__all__ = ["Crashes", "Track"]

log = logging.getLogger(__name__)

MARK = "|loop:"
MAX_PILLS = 64  # dead-lettered records remembered per partition (the metadata is at most 4 KB)

_PARTITION = operator.itemgetter(2, 3)  # a SourceRecord's (topic, partition)
Commits = dict[Partition, tuple[int, str]]
"""Per input partition, a commit's offset and metadata."""


@dataclass
class Track:
    """What the loop knows of one input partition it owns: its last commit and the crash count."""

    committed: int | None = None
    """Offset of the last commit (None: nothing was committed yet)."""
    meta: str = ""
    """The core's metadata of that commit."""
    read: int | None = None
    """Where the loop had read to when that commit was made."""
    start: int | None = None
    """Where the loop had read to when this worker got the partition: getting further is progress."""
    lives: int = 0
    """Worker lives in a row that started from ``start`` and did not get further."""
    careful: int = 0
    """Records from ``start`` on still to process one at a time."""
    pills: set[int] = field(default_factory=set)
    """Offsets of records that killed a worker, dead-lettered instead of processed."""

    def metadata(self, at: int | None = None) -> str:
        """The commit metadata of this state: the core's, then the loop's fields, with the record in flight ``at``."""
        offset = self.committed if self.committed is not None else 0
        read = self.read if self.read is not None else offset
        fields = [f"read={read}"] if read != offset else []
        fields += [f"lives={self.lives}"] if self.lives else []
        fields += [f"careful={self.careful}"] if self.careful else []
        fields += [f"at={at}"] if at is not None else []
        pills = sorted(p for p in self.pills if p >= offset)[-MAX_PILLS:]
        fields += [f"pills={','.join(map(str, pills))}"] if pills else []
        return f"{self.meta}{MARK}{';'.join(fields)}" if fields else self.meta

    @classmethod
    def parse(cls, offset: int, metadata: str) -> Track:
        """The track of a partition committed at ``offset`` (negative: never) with ``metadata``."""
        core, _, mine = metadata.partition(MARK)
        values: dict[str, str] = dict(item.partition("=")[::2] for item in mine.split(";") if "=" in item)
        number = {key: int(text) for key, text in values.items() if text.isdigit()}
        committed = offset if offset >= 0 else None
        read = number.get("read", committed)
        pills = {int(p) for p in values.get("pills", "").split(",") if p.isdigit()}
        if "at" in number:
            pills.add(number["at"])  # a worker died processing this record alone
        return cls(committed=committed, meta=core, read=read, start=read, lives=number.get("lives", 0),
                   careful=number.get("careful", 0), pills=pills)  # fmt: skip

    def copy(self) -> Track:
        """A copy with a set of pills of its own."""
        return replace(self, pills=set(self.pills))


class Crashes:
    """The crash count of the input partitions a worker owns, and the commits that keep it.

    Args:
        agent: the agent's name, for logs.
        max_crashes: worker lives in a row that may end on the same records before the next one
            takes them one at a time (0: no crash counting).
        max_batch: how many records from there that one takes one at a time.
    """

    def __init__(self, agent: str, max_crashes: int, max_batch: int) -> None:
        self.agent, self.max_crashes, self.max_batch = agent, max_crashes, max_batch
        self.tracks: dict[Partition, Track] = {}
        self.touched: set[Partition] = set()  # partitions whose life count this worker has raised

    def assigned(self, committed: Commits) -> Commits:
        """Take the count of partitions assigned with their commits (offset, metadata); those commits as the
        core sees them, with its own metadata only."""
        tracks = {tp: Track.parse(offset, metadata) for tp, (offset, metadata) in committed.items()}
        self.tracks.update(tracks)
        return {tp: (offset, tracks[tp].meta) for tp, (offset, _) in committed.items()}

    def revoked(self, partitions: list[Partition]) -> list[TopicPartition]:
        """Forget ``partitions``, handed back cleanly (a rebalance, a stop): this life ended cleanly on them.
        The commits that take its count back where no commit has cleared it yet; only lives that end
        abruptly count."""
        undo = []
        for tp in partitions:
            track = self.tracks.pop(tp, None)
            if tp in self.touched and track is not None and track.lives and track.committed is not None:
                track.lives -= 1
                undo.append(TopicPartition(tp[0], tp[1], track.committed, metadata=track.metadata()))
        self.touched.difference_update(partitions)
        return undo

    def uncounted(self, records: Sequence[SourceRecord]) -> dict[Partition, SourceRecord]:
        """The first record of each partition of ``records`` on which this life is not counted yet (none
        without crash counting, and none in the usual case: all counted already)."""
        partitions = dict.fromkeys(map(_PARTITION, records))
        for tp in partitions:
            self._track(tp)
        if not self.max_crashes or self.touched.issuperset(partitions):
            return {}
        first: dict[Partition, SourceRecord] = {}
        for record in records:
            tp = (record.topic, record.partition)
            if tp not in self.touched and tp not in first:
                first[tp] = record
        return first

    def count(self, first: dict[Partition, SourceRecord]) -> list[TopicPartition]:
        """Count this life on the partitions of the records ``first`` (see :meth:`uncounted`); the commits
        that say so, each at its partition's offset unchanged (or the record's, before any commit)."""
        marks = []
        for tp, record in first.items():
            track = self.tracks[tp]
            if track.read is None:
                track.read = track.start = record.offset
            if track.lives >= self.max_crashes and not track.careful:
                track.careful = self.max_batch
                log.warning("%s: %s[%d] ended %d worker lives in a row; taking its next %d records one at a time",
                            self.agent, tp[0], tp[1], track.lives, track.careful)  # fmt: skip
            track.lives += 1
            marks.append(self._position(record, track))
            self.touched.add(tp)
        return marks

    @property
    def suspects(self) -> bool:
        """Whether a partition holds records to dead-letter or to take one at a time (the usual case: none)."""
        return any(track.pills or track.careful for track in self.tracks.values())

    def is_pill(self, record: SourceRecord) -> bool:
        """Whether ``record`` killed a worker that processed it alone: it is dead-lettered instead."""
        return record.offset in self.tracks[(record.topic, record.partition)].pills

    def in_doubt(self, record: SourceRecord) -> bool:
        """Whether ``record`` is to be processed alone, after :meth:`in_flight` is committed."""
        track = self.tracks[(record.topic, record.partition)]
        return bool(track.careful) and record.offset >= (track.start or 0)

    def in_flight(self, record: SourceRecord) -> TopicPartition:
        """The commit that says ``record`` is processed alone now: a life that ends in it makes it a pill."""
        return self._position(record, self.tracks[(record.topic, record.partition)], at=record.offset)

    def landed(self, record: SourceRecord, offsets: Commits) -> Commits:
        """``offsets`` with a commit of ``record``'s partition, which says that the record is no longer in
        flight: where the core commits nothing of it now (as the join while it catches up), at the
        offset committed before."""
        tp = (record.topic, record.partition)
        track = self.tracks[tp]
        if tp not in offsets and track.committed is not None:
            return {**offsets, tp: (track.committed, track.meta)}
        return offsets

    def letters(self, records: Sequence[SourceRecord]) -> list[tuple[SourceRecord, str]]:
        """The pills of ``records`` (see :meth:`is_pill`) to dead-letter, with the error of each; a pill a
        worker before this one dead-lettered already (before where this one started) is not."""
        letters = []
        for pill in records:
            track = self.tracks[(pill.topic, pill.partition)]
            if track.start is None or pill.offset >= track.start:
                letters.append((pill, f"a worker died processing this record alone, after {track.lives} lives "
                                      f"in a row ended on its batch; it is not processed again"))  # fmt: skip
        return letters

    def after(self, offsets: Commits, inputs: list[SourceRecord]) -> dict[Partition, Track]:
        """The tracks once ``inputs`` are committed at ``offsets``; a commit that got further clears the life
        count. They hold once the commit landed (:meth:`committed`)."""
        after: dict[Partition, Track] = {}
        for tp, last in last_records(inputs).items():
            track = self.tracks[tp].copy()
            track.read = max(track.read or 0, last.offset + 1)
            if track.careful:
                start = track.start or 0
                done = sum(1 for r in inputs if (r.topic, r.partition) == tp and r.offset >= start)
                track.careful = max(0, track.careful - done)
            after[tp] = track
        for tp, (offset, meta) in offsets.items():  # only a commit says the life got further
            track = after.get(tp) or self._track(tp).copy()
            track.committed, track.meta = offset, meta
            track.pills = {p for p in track.pills if p >= offset}
            if not track.careful and (track.start is None or (track.read or 0) > track.start):
                track.lives = 0
            after[tp] = track
        return after

    def committed(self, after: dict[Partition, Track]) -> None:
        """The commit of :meth:`after`'s tracks landed."""
        self.tracks.update(after)

    def _track(self, tp: Partition) -> Track:
        if tp not in self.tracks:
            self.tracks[tp] = Track()
        return self.tracks[tp]

    def _position(self, record: SourceRecord, track: Track, at: int | None = None) -> TopicPartition:
        """The partition's commit as it stands (or the record's offset, before any), with the loop's fields."""
        if track.committed is None:
            track.committed, track.meta = record.offset, ""
        return TopicPartition(record.topic, record.partition, track.committed, metadata=track.metadata(at))
