"""The one batch loop every agent runs: a micro-batch in, the agent's core, its outputs and offsets committed.

An agent is a broker-free core (``process``: records in, a :class:`Produced` out) plus a few lines
of wiring; this loop does the rest, the same for every agent:

1. take a micro-batch from the source (up to ``max_batch`` records, ``max_wait_s`` after the first);
2. call the core; an exception there dead-letters the batch's records with the cause, it never
   ends the worker;
3. size every output record: one the topics can't take is replaced by a dead letter of the input
   it was made from (``too-large``);
4. commit the outputs, the core's state changes (to its changelog, see ``loopline.state``) and the
   input offsets (one Kafka transaction, by default); records the broker refuses for what they
   are are replaced the same way (``send-refused``) and the rest is committed; when the commit is
   aborted (the worker lost its partitions, the broker failed the transaction), the source reads
   the batch again from the committed offsets, with the agent's state for those partitions
   restored;
5. count the batch in the metrics.

**Backlogs.** A batch that comes full while another full one waits (the worker is behind) is sent
into the open transaction and not committed yet: the transaction takes the batches of up to
``commit_interval_s``. It is committed with a batch after which less waits (the worker caught
up), when that time is up, before the worker waits (its core is not ready, nothing came),
before its partitions are handed back, and at a stop. A transaction costs a few broker round
trips and the wait for the previous one's commit markers, whatever its size. The core sees the state changes of
the transaction's earlier batches. When such a transaction is aborted, its batches are read
again and committed one by one, so that a record that can't be sent is found in its own batch.

Where the core did not say which input an unsendable record came from, the loop finds it: it
reads the batch again in halves, down to the one record, which is then dead-lettered.

**Crashes.** A record that kills the worker process (a segfault in a native library, an error
outside the core) would kill every restarted worker the same way. So the loop keeps a count in
the commit metadata of each input partition, next to the core's own: before a worker first
processes records of a partition, it commits the partition's offset unchanged with the count of
worker lives that started there plus one; a commit that gets further than the previous lives read
clears it, and a worker that hands the partition back cleanly (a rebalance, a stop) takes its own
life back. Once ``max_crashes`` lives in a row ended without getting further, the next one takes
the partition's next ``max_batch`` records one at a time, each after committing its offset as the
one in flight; the life after a crash dead-letters that record (``poison-pill``) instead of
processing it, and remembers it in the metadata until the commits pass it. The metadata reads
``<core's metadata>|loop:read=…;lives=…;careful=…;at=…;pills=…`` (only the fields in use).

Faust's per-record stream path is not used: it costs about 110 µs a record (9k records/s for a
consume-and-ack loop here), while this loop runs on librdkafka's batch calls; see
docs/benchmarks.md for the figures. The loop runs in a thread of the Faust worker (one per loop).
"""

from __future__ import annotations

import logging
import operator
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from confluent_kafka import TopicPartition

from loopline.deadletters import DeadLetters
from loopline.kafka.output import KafkaOutput, Refused
from loopline.kafka.retry import Stopped
from loopline.kafka.source import KafkaSource, Partition
from loopline.metrics import BATCH_SIZE, DEAD_LETTERS, EVENTS_IN, STATE_BYTES, STATE_KEYS
from loopline.records import KeyValue, Produced, SourceRecord, Topic
from loopline.settings import KafkaSettings
from loopline.state.state import State
from loopline.state.store import Changes

__all__ = [
    "RECORD_OVERHEAD_BYTES",
    "BatchLoop",
    "Output",
    "Source",
    "Span",
    "Track",
    "kafka_loop",
    "next_offsets",
]

log = logging.getLogger(__name__)

RECORD_OVERHEAD_BYTES = 512
"""Room left under a topic's ``max.message.bytes`` for Kafka's batch and record headers (about 80
bytes were measured for a record alone in its batch)."""
MARK = "|loop:"
MAX_PILLS = 64  # dead-lettered records remembered per partition (the metadata is at most 4 KB)

Assign = Callable[[dict[Partition, tuple[int, str]]], None]
Revoke = Callable[[list[Partition], bool], None]
"""Told of partitions taken away, and whether they were lost (taken before this worker could hand them back)."""


class Source(Protocol):
    """Where batches come from (:class:`KafkaSource`, or ``loopline.kafka.testing.MemorySource``).

    The loop sits between the source and the core's ``on_assign`` and ``on_revoke``: it takes its
    own fields out of the committed metadata before the core sees it.
    """

    on_assign: Assign | None
    on_revoke: Revoke | None

    def take(self, max_records: int, max_wait_s: float, first_wait_s: float | None = None) -> list[SourceRecord]: ...

    def rewind(self) -> None: ...

    def backlog(self) -> int: ...

    def close(self) -> None: ...


class Output(Protocol):
    """Where a batch's outputs and offsets go (:class:`KafkaOutput`, or ``MemoryOutput``)."""

    def commit(
        self,
        records: dict[Topic, list[KeyValue]],
        offsets: list[TopicPartition],
        stop: threading.Event,
        changes: dict[int, Changes] | None = None,
        close: bool = True,
    ) -> bool: ...

    def abandon(self, stop: threading.Event) -> None: ...

    def mark(self, offsets: list[TopicPartition], stop: threading.Event) -> None: ...

    def close(self) -> None: ...


_PARTITION = operator.itemgetter(2, 3)  # a SourceRecord's (topic, partition)
_OFFSET = operator.itemgetter(4)
_KEY, _VALUE = operator.itemgetter(0), operator.itemgetter(1)


def _longest(pairs: list[KeyValue], part: Callable[[KeyValue], bytes | None]) -> int:
    return max(map(len, filter(None, map(part, pairs))), default=0)


def last_records(records: Sequence[SourceRecord]) -> dict[Partition, SourceRecord]:
    """The last record of each partition in ``records``, whose records of one partition come in offset order
    (as the source gives them)."""
    return dict(zip(map(_PARTITION, records), records, strict=True))


def next_offsets(records: Sequence[SourceRecord]) -> dict[Partition, tuple[int, str]]:
    """Per input partition, the offset after the batch's last record of it (no metadata)."""
    return {tp: (record.offset + 1, "") for tp, record in last_records(records).items()}


@dataclass
class Span:
    """The batches sent into the open transaction, not committed yet."""

    started: float
    offsets: dict[Partition, TopicPartition] = field(default_factory=dict)
    """Per input partition, where the transaction commits it (with the loop's metadata)."""
    batches: list[tuple[int, Produced, bool]] = field(default_factory=list)
    """Each batch's input records, output, and whether the core made it."""

    @property
    def inputs(self) -> int:
        return sum(count for count, _, _ in self.batches)


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


class BatchLoop:
    """Runs ``process`` over micro-batches from ``source`` and commits what it returns to ``output``.

    Args:
        agent: the agent's name, for logs, metrics and dead letters.
        process: the core: a batch of records in, its outputs out.
        ready: whether the core can take a batch now (no batch is read while it can't).
        observe: records the agent's own metrics of a committed batch.
        max_record_bytes: the largest output record (key and value) the topics take.
        max_crashes: worker lives in a row that may end on the same records before the next one
            takes them one at a time (0: no crash counting).
        state: the core's state, whose changes each batch commits to its changelog; restored
            before the core hears of new partitions, closed after it heard of revoked ones.
        commit_interval_s: longest time a transaction takes full batches before it is committed
            (0: every batch is committed on its own).
    """

    def __init__(
        self,
        agent: str,
        source: Source,
        output: Output,
        process: Callable[[list[SourceRecord]], Produced],
        max_batch: int,
        max_wait_s: float,
        ready: Callable[[], bool] = lambda: True,
        observe: Callable[[Produced], None] | None = None,
        *,
        max_record_bytes: int = 16 * 1024 * 1024 - RECORD_OVERHEAD_BYTES,
        max_crashes: int = 3,
        state: State | None = None,
        commit_interval_s: float = 0.0,
    ) -> None:
        self.agent, self.source, self.output, self.process = agent, source, output, process
        self.max_batch, self.max_wait_s, self.ready, self.observe = max_batch, max_wait_s, ready, observe
        self.max_record_bytes, self.max_crashes, self.state = max_record_bytes, max_crashes, state
        self.dead = DeadLetters(agent)
        self.tracks: dict[Partition, Track] = {}
        self.touched: set[Partition] = set()  # partitions whose life count this worker has raised
        self.core_commits = False  # whether the core says where to commit (then the loop never does alone)
        self.narrow: int | None = None  # batch size while looking for an unsendable record's input
        self.narrow_left = 0
        self.commit_interval_s = commit_interval_s
        self.span: Span | None = None
        self.single_left = 0  # records of an aborted transaction still to commit batch by batch
        self.stop = threading.Event()
        self._span_lost = False  # the open transaction could not be committed before a rebalance
        self._rewinding = False
        self.core_assign, self.core_revoke = source.on_assign, source.on_revoke
        source.on_assign, source.on_revoke = self._assigned, self._revoked

    def run(self, stop: threading.Event) -> None:
        """Batches until ``stop`` is set; then the source and output are closed."""
        self.stop = stop
        try:
            while not stop.is_set():
                if not self.ready():
                    self.close_span(stop)
                    stop.wait(0.05)
                    continue
                records = self.take()
                if records:
                    self.step(records, stop)
                else:
                    self.close_span(stop)
            self.close_span(stop)
        except Stopped:
            log.info("%s stopped with a batch uncommitted; it will be read again", self.agent)
        finally:
            self.output.close()
            self.source.close()

    def take(self) -> list[SourceRecord]:
        """The next micro-batch (smaller while an unsendable record's input is looked for)."""
        open_span = self.span is not None  # then an empty take is not waited long: it commits the span
        records = self.source.take(self._size(), self.max_wait_s, self.max_wait_s if open_span else None)
        if self._span_lost:  # what the batches read since the last commit did is undone: read them again
            self._span_lost = False
            self._rewind()
            return []
        return records

    def _size(self) -> int:
        return min(self.max_batch, self.narrow or self.max_batch)

    def step(self, records: list[SourceRecord], stop: threading.Event) -> bool:
        """Process and commit one batch; False when a commit was aborted and the rest is to be read again.

        Known poison pills are dead-lettered instead of processed, and records under suspicion of
        killing the worker are processed one at a time; the rest goes to the core together.
        """
        if not self._touch(records, stop):
            return False
        if not any(track.pills or track.careful for track in self.tracks.values()):  # the usual case: no suspects
            behind = len(records) == self._size() and self.source.backlog() >= self._size()
            return self._commit(records, [], stop, close=not behind)
        if not self.close_span(stop):
            return False
        chunk: list[SourceRecord] = []
        pills: list[SourceRecord] = []
        for record in records:
            track = self.tracks[(record.topic, record.partition)]
            if record.offset in track.pills:
                pills.append(record)
            elif track.careful and record.offset >= (track.start or 0):
                if (chunk or pills) and not self._commit(chunk, pills, stop):
                    return False
                chunk, pills = [], []
                self.output.mark([self._position(record, track, at=record.offset)], stop)  # died in there: the pill
                if not self._commit([record], [], stop, alone=True):
                    return False
            else:
                chunk.append(record)
        return self._commit(chunk, pills, stop) if chunk or pills else True

    def _commit(
        self,
        chunk: list[SourceRecord],
        pills: list[SourceRecord],
        stop: threading.Event,
        alone: bool = False,
        close: bool = True,
    ) -> bool:
        """Process ``chunk``, dead-letter ``pills``, commit; ``alone``: ``chunk`` is one record committed as
        the one in flight, whose partition's commit must say that it is no longer (even where the core
        commits nothing now, as the join while it catches up: then at the offset committed before).
        ``close=False``: the worker is behind, and the batch may stay in the open transaction (see the module doc)."""
        out, made = self._process(chunk) if chunk else (Produced(), False)
        for pill in pills:
            track = self.tracks[(pill.topic, pill.partition)]
            if track.start is None or pill.offset >= track.start:  # else a worker before sent it
                self.dead.add(out, pill, "poison-pill", f"a worker died processing this record alone, after "
                              f"{track.lives} lives in a row ended on its batch; it is not processed again")  # fmt: skip
        inputs = sorted(chunk + pills, key=_OFFSET) if pills else chunk  # a partition's records in offset order
        if out.offsets is not None:
            self.core_commits = True
            offsets = out.offsets
        else:  # pills alone say nothing of where a core that holds records would commit
            offsets = {} if self.core_commits and not chunk else next_offsets(inputs)
        if alone:
            tp, track = (chunk[0].topic, chunk[0].partition), self.tracks[(chunk[0].topic, chunk[0].partition)]
            if tp not in offsets and track.committed is not None:
                offsets = {**offsets, tp: (track.committed, track.meta)}
        too_large = self._too_large(out)
        if too_large and not self._replace(out, too_large, inputs, "too-large"):
            return self._narrow(inputs)
        after = self._after(offsets, inputs)
        span = self.span or Span(time.monotonic())
        ends = dict(span.offsets)
        ends.update({(t, p): TopicPartition(t, p, offset, metadata=after[(t, p)].metadata())
                     for (t, p), (offset, _) in offsets.items()})  # fmt: skip
        close = (close or self.narrow is not None or self.single_left > 0
                 or time.monotonic() - span.started >= self.commit_interval_s)  # fmt: skip
        changes = self.state.changes() if self.state is not None else None
        while True:
            try:
                committed = self.output.commit(out.records, list(ends.values()), stop, changes, close=close)
                break
            except Refused as refused:
                log.warning("%s: %d outputs refused (%s)", self.agent, len(refused.records), refused.records[0][2])
                if span.batches:  # the transaction's earlier batches went with it
                    self._rewind(len(inputs))
                    return False
                if not self._replace(out, refused.records, inputs, "send-refused"):
                    return self._narrow(inputs)
        if not committed:
            self._rewind(len(inputs))
            return False
        self.tracks.update(after)
        span.offsets = ends
        span.batches.append((len(inputs), out, made))
        self.span = span
        if close:
            self._committed()
        return True

    def close_span(self, stop: threading.Event) -> bool:
        """Commit the batches sent into the open transaction, if any; False when it was aborted, and they are
        to be read again."""
        if self.span is None or self._commit_span(stop):
            return True
        self._rewind()
        return False

    def _commit_span(self, stop: threading.Event) -> bool:
        assert self.span is not None
        try:
            committed = self.output.commit({}, list(self.span.offsets.values()), stop, close=True)
        except Refused:  # a record's delivery failed: its batch is found when they are read again one by one
            committed = False
        if committed:
            self._committed()
        return committed

    def _committed(self) -> None:
        """The open transaction was committed: its state changes into the stores, its batches counted."""
        span, self.span = self.span, None
        assert span is not None
        if self.state is not None:
            self.state.committed()
            self._report_state()
        for count, out, made in span.batches:
            if self.narrow is not None:
                self.narrow_left -= count
                if self.narrow_left <= 0:
                    self.narrow = None
            self.single_left = max(0, self.single_left - count)
            EVENTS_IN.labels(self.agent).inc(count)
            BATCH_SIZE.labels(self.agent).observe(count)
            for reason, dead in Counter(out.dead_reasons).items():
                DEAD_LETTERS.labels(self.agent, reason).inc(dead)
            if self.observe is not None and made:
                self.observe(out)

    def _report_state(self) -> None:
        assert self.state is not None
        for partition, (keys, size) in self.state.sizes().items():
            STATE_KEYS.labels(self.state.agent, str(partition)).set(keys)
            STATE_BYTES.labels(self.state.agent, str(partition)).set(size)

    def _process(self, records: list[SourceRecord]) -> tuple[Produced, bool]:
        """The core's output, and whether the core made it (its own output type, for ``observe``)."""
        try:
            return self.process(records), True
        except Stopped:
            raise
        except Exception as exc:  # a bug must not lose the batch or stop the worker: dead-letter it with the cause
            log.exception("%s: a batch of %d records failed", self.agent, len(records))
            if self.state is not None:
                self.state.discard(batch_only=True)  # what the core wrote of the batch before it failed
            out = Produced()
            for record in records:
                self.dead.add(out, record, "internal-error", repr(exc))
            return out, False

    def _too_large(self, out: Produced) -> list[tuple[Topic, int, str]]:
        limit = self.max_record_bytes
        return [
            (topic, index, f"its {topic} record would be {size} bytes; the topics take at most {limit}")
            for topic, pairs in out.records.items()
            if pairs and _longest(pairs, _KEY) + _longest(pairs, _VALUE) > limit  # else none is
            for index, size in enumerate(len(key or b"") + len(value) for key, value in pairs)
            if size > limit
        ]

    def _replace(
        self, out: Produced, bad: list[tuple[Topic, int, str]], inputs: list[SourceRecord], reason: str
    ) -> bool:
        """Put dead letters of their inputs in place of the ``bad`` records; False where an input is unknown."""
        single = inputs[0] if len(inputs) == 1 else None
        letters: dict[tuple[str, int, int], tuple[SourceRecord, str]] = {}
        for topic, index, error in bad:
            if topic is Topic.DEAD_LETTERS:
                raise RuntimeError(f"{self.agent}: a dead letter can't be sent ({error}); check the dead-letters topic")
            source = out.source_of(topic, index) or single
            if source is None:
                return False
            letters.setdefault((source.topic, source.partition, source.offset), (source, error))
        gone: dict[Topic, set[int]] = {}
        for topic, index, _ in bad:
            gone.setdefault(topic, set()).add(index)
        kept = Produced()
        for topic, pairs in out.records.items():
            keep = [i for i in range(len(pairs)) if i not in gone.get(topic, set())]
            kept.extend(topic, [pairs[i] for i in keep], [out.source_of(topic, i) for i in keep])
        out.records, out.sources = kept.records, kept.sources
        for source, error in letters.values():
            self.dead.add(out, source, reason, error)
        return True

    def _narrow(self, inputs: list[SourceRecord]) -> bool:
        """Read the batch again in halves: an unsendable record's input is found in the one-record batch."""
        self.narrow = max(1, len(inputs) // 2)
        self.narrow_left = len(inputs) + (self.span.inputs if self.span is not None else 0)
        log.warning("%s: an output of a batch of %d can't be sent and names no input; reading %d at a time",
                    self.agent, len(inputs), self.narrow)  # fmt: skip
        self._rewind(len(inputs))
        return False

    def _rewind(self, inputs: int = 0) -> None:
        """Undo what was sent since the last commit and read it again from the committed offsets; ``inputs``:
        records of the running batch. Where the transaction held earlier batches, they are all read
        again batch by batch."""
        if self.span is not None:
            self.single_left = self.span.inputs + inputs
            self.span = None
        self.output.abandon(self.stop)
        if self.state is not None:
            self.state.discard()
        self._rewinding = True
        try:
            self.source.rewind()
        finally:
            self._rewinding = False

    def _track(self, tp: Partition) -> Track:
        if tp not in self.tracks:
            self.tracks[tp] = Track()
        return self.tracks[tp]

    def _after(self, offsets: dict[Partition, tuple[int, str]], inputs: list[SourceRecord]) -> dict[Partition, Track]:
        """The tracks once ``inputs`` are committed at ``offsets``; a commit that got further clears the life count."""
        after: dict[Partition, Track] = {}
        for tp, last in last_records(inputs).items():
            track = replace(self.tracks[tp], pills=set(self.tracks[tp].pills))
            track.read = max(track.read or 0, last.offset + 1)
            if track.careful:
                start = track.start or 0
                done = sum(1 for r in inputs if (r.topic, r.partition) == tp and r.offset >= start)
                track.careful = max(0, track.careful - done)
            after[tp] = track
        for tp, (offset, meta) in offsets.items():  # only a commit says the life got further
            track = after.get(tp) or replace(self._track(tp), pills=set(self._track(tp).pills))
            track.committed, track.meta = offset, meta
            track.pills = {p for p in track.pills if p >= offset}
            if not track.careful and (track.start is None or (track.read or 0) > track.start):
                track.lives = 0
            after[tp] = track
        return after

    def _touch(self, records: list[SourceRecord], stop: threading.Event) -> bool:
        """Count this worker's life on the partitions it processes for the first time (see the module doc);
        False when the open transaction, committed first, was aborted."""
        partitions = dict.fromkeys(map(_PARTITION, records))
        for tp in partitions:
            self._track(tp)
        if not self.max_crashes or self.touched.issuperset(partitions):  # the usual case: all counted already
            return True
        first: dict[Partition, SourceRecord] = {}
        for record in records:
            tp = (record.topic, record.partition)
            if tp not in self.touched and tp not in first:
                first[tp] = record
        if not self.close_span(stop):
            return False
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
        self.output.mark(marks, stop)
        return True

    def _position(self, record: SourceRecord, track: Track, at: int | None = None) -> TopicPartition:
        """The partition's commit as it stands (or the record's offset, before any), with the loop's fields."""
        if track.committed is None:
            track.committed, track.meta = record.offset, ""
        return TopicPartition(record.topic, record.partition, track.committed, metadata=track.metadata(at))

    def _assigned(self, committed: dict[Partition, tuple[int, str]]) -> None:
        tracks = {tp: Track.parse(offset, metadata) for tp, (offset, metadata) in committed.items()}
        self.tracks.update(tracks)
        if self.state is not None:
            self.state.assign({partition for _, partition in committed})
        if self.core_assign is not None:
            self.core_assign({tp: (offset, tracks[tp].meta) for tp, (offset, _) in committed.items()})

    def _revoked(self, partitions: list[Partition], lost: bool) -> None:
        """Partitions handed back (a rebalance, a stop): the open transaction is committed first (else what
        it sent is read again after the rebalance); this life ended cleanly on them, so it takes back
        its count where no commit has cleared it yet; only lives that end abruptly count."""
        if self.span is not None and not self._rewinding and not self._commit_span(self.stop):
            self.single_left, self.span = self.span.inputs, None
            self.output.abandon(self.stop)
            if self.state is not None:
                self.state.discard()
            self._span_lost = True
        if not self._rewinding:  # a rewind reads the same partitions again in the same life
            undo = []
            for tp in partitions:
                track = self.tracks.pop(tp, None)
                if tp in self.touched and track is not None and track.lives and track.committed is not None:
                    track.lives -= 1
                    undo.append(TopicPartition(tp[0], tp[1], track.committed, metadata=track.metadata()))
            self.touched.difference_update(partitions)
            self.output.mark(undo, threading.Event())
        if self.core_revoke is not None:
            self.core_revoke(partitions, lost)
        if self.state is not None:
            self.state.revoke({partition for _, partition in partitions}, clean=not lost)


def kafka_loop(
    kafka: KafkaSettings,
    agent: str,
    topics: Sequence[Topic],
    process: Callable[[list[SourceRecord]], Produced],
    max_batch: int,
    max_wait_s: float,
    *,
    group: str | None = None,
    on_assign: Assign | None = None,
    on_revoke: Revoke | None = None,
    ready: Callable[[], bool] = lambda: True,
    observe: Callable[[Produced], None] | None = None,
    state: State | None = None,
    spans: bool = True,
) -> BatchLoop:
    """A :class:`BatchLoop` on Kafka: ``topics`` read in the group ``<prefix><group or agent>``; ``state``
    logged to its changelog (see :func:`loopline.state.changelog.kafka_state`); ``spans=False``: every
    batch is committed on its own (for a core whose batch may take longer than a transaction may
    stay open)."""
    name = group or agent
    source = KafkaSource(kafka, [kafka.topic(t) for t in topics], f"{kafka.topic_prefix}{name}", on_assign, on_revoke)
    output = KafkaOutput(kafka, source, name, state.changelog.topic if state is not None else None)
    return BatchLoop(
        agent, source, output, process, max_batch, max_wait_s, ready, observe,
        max_record_bytes=kafka.max_message_bytes - RECORD_OVERHEAD_BYTES, max_crashes=kafka.max_crashes, state=state,
        commit_interval_s=kafka.commit_interval_ms / 1000 if spans else 0.0,
    )  # fmt: skip
