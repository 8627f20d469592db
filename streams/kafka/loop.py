"""The one batch loop every agent runs: a micro-batch in, the agent's core, its outputs and offsets committed.

An agent is a broker-free core (``process``: records in, a :class:`Produced` out) plus a few lines
of wiring; this loop does the rest, the same for every agent:

1. take a micro-batch from the source (up to ``max_batch`` records, ``max_wait_s`` after the first);
2. call the core; an exception there dead-letters the batch's records with the cause, it never
   ends the worker;
3. size every output record: one the topics can't take is replaced by a dead letter of the input
   it was made from (``too-large``, :mod:`loopline.kafka.unsendable`);
4. commit the outputs, the core's state changes (to its changelog, see ``loopline.state``) and the
   input offsets (one Kafka transaction, by default); records the broker refuses for what they
   are are replaced the same way (``send-refused``) and the rest is committed; when the commit is
   aborted (the worker lost its partitions, the broker failed the transaction), the source reads
   the batch again from the committed offsets, with the agent's state for those partitions
   restored;
5. count the batch in the metrics.

Its policies are parts of their own, each tested alone: when the open transaction is committed
while a backlog drains (:mod:`loopline.kafka.commit_policy`; the core sees the state changes of the
transaction's earlier batches), how batches are read again after a rewind
(:mod:`loopline.kafka.rewinds`), and the crash count that turns a record that keeps killing the
worker into a dead letter (:mod:`loopline.kafka.crashes`).

Faust's per-record stream path is not used: it costs about 110 µs a record (9k records/s for a
consume-and-ack loop here), while this loop runs on librdkafka's batch calls; see
docs/benchmarks.md for the figures. The loop runs in a thread of the Faust worker (one per loop).
"""

from __future__ import annotations

import logging
import operator
import threading
from collections import Counter
from collections.abc import Callable, Sequence

from confluent_kafka import TopicPartition

from loopline.deadletters import DeadLetters
from loopline.kafka import unsendable
from loopline.kafka.commit_policy import CommitPolicy, Span
from loopline.kafka.crashes import Crashes
from loopline.kafka.ends import Assign, Output, Revoke, Source
from loopline.kafka.offsets import next_offsets
from loopline.kafka.output import KafkaOutput, Refused
from loopline.kafka.retry import Stopped
from loopline.kafka.rewinds import Rewinds
from loopline.kafka.source import KafkaSource, Partition
from loopline.metrics import BATCH_SIZE, DEAD_LETTERS, EVENTS_IN, STATE_BYTES, STATE_KEYS
from loopline.records import Produced, SourceRecord, Topic
from loopline.settings import KafkaSettings
from loopline.state.state import State

__all__ = ["RECORD_OVERHEAD_BYTES", "BatchLoop", "kafka_loop"]

log = logging.getLogger(__name__)

RECORD_OVERHEAD_BYTES = 512
"""Room left under a topic's ``max.message.bytes`` for Kafka's batch and record headers (about 80
bytes were measured for a record alone in its batch)."""

_OFFSET = operator.itemgetter(4)  # a SourceRecord's offset


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
        self.max_record_bytes, self.state = max_record_bytes, state
        self.dead = DeadLetters(agent)
        self.commits = CommitPolicy(commit_interval_s)
        self.rewinds = Rewinds()
        self.crashes = Crashes(agent, max_crashes, max_batch)
        self.core_commits = False  # whether the core says where to commit (then the loop never does alone)
        self.stop = threading.Event()
        self._span_lost = False  # the open transaction could not be committed before a rebalance
        self._rewinding = False
        self.core_assign, self.core_revoke = source.on_assign, source.on_revoke
        source.on_assign, source.on_revoke = self._assigned, self._revoked

    @property
    def span(self) -> Span | None:
        """The batches sent into the open transaction, not committed yet."""
        return self.commits.span

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
        """The next micro-batch (smaller while a rewind's batches are read again)."""
        open_span = self.commits.span is not None  # then an empty take is not waited long: it commits the span
        size = self.rewinds.size(self.max_batch)
        records = self.source.take(size, self.max_wait_s, self.max_wait_s if open_span else None)
        if self._span_lost:  # what the batches read since the last commit did is undone: read them again
            self._span_lost = False
            self._rewind()
            return []
        return records

    def step(self, records: list[SourceRecord], stop: threading.Event) -> bool:
        """Process and commit one batch; False when a commit was aborted and the rest is to be read again.

        Known poison pills are dead-lettered instead of processed, and records under suspicion of
        killing the worker are processed one at a time; the rest goes to the core together.
        """
        if not self._touch(records, stop):
            return False
        if not self.crashes.suspects:  # the usual case
            behind = self.commits.behind(len(records), self.rewinds.size(self.max_batch), self.source.backlog)
            return self._commit(records, [], stop, behind=behind)
        if not self.close_span(stop):
            return False
        chunk: list[SourceRecord] = []
        pills: list[SourceRecord] = []
        for record in records:
            if self.crashes.is_pill(record):
                pills.append(record)
            elif self.crashes.in_doubt(record):
                if (chunk or pills) and not self._commit(chunk, pills, stop):
                    return False
                chunk, pills = [], []
                self.output.mark([self.crashes.in_flight(record)], stop)  # died in there: the pill
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
        behind: bool = False,
    ) -> bool:
        """Process ``chunk``, dead-letter ``pills``, commit; ``alone``: ``chunk`` is one record committed as
        the one in flight (see :meth:`Crashes.landed`). ``behind``: the worker is behind, and the batch
        may stay in the open transaction (see :mod:`loopline.kafka.commit_policy`)."""
        out, made = self._process(chunk) if chunk else (Produced(), False)
        for pill, error in self.crashes.letters(pills):
            self.dead.add(out, pill, "poison-pill", error)
        inputs = sorted(chunk + pills, key=_OFFSET) if pills else chunk  # a partition's records in offset order
        if out.offsets is not None:
            self.core_commits = True
            offsets = out.offsets
        else:  # pills alone say nothing of where a core that holds records would commit
            offsets = {} if self.core_commits and not chunk else next_offsets(inputs)
        if alone:
            offsets = self.crashes.landed(chunk[0], offsets)
        too_large = unsendable.too_large(out, self.max_record_bytes)
        if too_large and not unsendable.replace(out, too_large, inputs, "too-large", self.dead):
            return self._narrow(inputs)
        after = self.crashes.after(offsets, inputs)
        span = self.commits.next()
        ends = dict(span.offsets)
        ends.update({(t, p): TopicPartition(t, p, offset, metadata=after[(t, p)].metadata())
                     for (t, p), (offset, _) in offsets.items()})  # fmt: skip
        close = self.rewinds.alone or self.commits.closes(span, behind)
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
                if not unsendable.replace(out, refused.records, inputs, "send-refused", self.dead):
                    return self._narrow(inputs)
        if not committed:
            self._rewind(len(inputs))
            return False
        self.crashes.committed(after)
        self.commits.sent(span, ends, (len(inputs), out, made))
        if close:
            self._committed()
        return True

    def close_span(self, stop: threading.Event) -> bool:
        """Commit the batches sent into the open transaction, if any; False when it was aborted, and they are
        to be read again."""
        if self.commits.span is None or self._commit_span(stop):
            return True
        self._rewind()
        return False

    def _commit_span(self, stop: threading.Event) -> bool:
        assert self.commits.span is not None
        try:
            committed = self.output.commit({}, list(self.commits.span.offsets.values()), stop, close=True)
        except Refused:  # a record's delivery failed: its batch is found when they are read again one by one
            committed = False
        if committed:
            self._committed()
        return committed

    def _committed(self) -> None:
        """The open transaction was committed: its state changes into the stores, its batches counted."""
        span = self.commits.end()
        assert span is not None
        if self.state is not None:
            self.state.committed()
            self._report_state()
        for count, out, made in span.batches:
            self.rewinds.committed(count)
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

    def _narrow(self, inputs: list[SourceRecord]) -> bool:
        """Read the batch again in halves: an unsendable record's input is found in the one-record batch."""
        size = self.rewinds.halve(len(inputs), self.commits.span.inputs if self.commits.span is not None else 0)
        log.warning("%s: an output of a batch of %d can't be sent and names no input; reading %d at a time",
                    self.agent, len(inputs), size)  # fmt: skip
        self._rewind(len(inputs))
        return False

    def _rewind(self, inputs: int = 0) -> None:
        """Undo what was sent since the last commit and read it again from the committed offsets; ``inputs``:
        records of the running batch."""
        self._undo(inputs)
        self._rewinding = True
        try:
            self.source.rewind()
        finally:
            self._rewinding = False

    def _undo(self, inputs: int) -> None:
        """Abort what was sent since the last commit; where the transaction held earlier batches, they are
        all read again batch by batch (``inputs``: records of the running batch)."""
        span = self.commits.end()
        if span is not None:
            self.rewinds.batch_by_batch(span.inputs + inputs)
        self.output.abandon(self.stop)
        if self.state is not None:
            self.state.discard()

    def _touch(self, records: list[SourceRecord], stop: threading.Event) -> bool:
        """Count this worker's life on the partitions it processes for the first time (see
        :mod:`loopline.kafka.crashes`); False when the open transaction, committed first, was aborted."""
        first = self.crashes.uncounted(records)
        if not first:
            return True
        if not self.close_span(stop):
            return False
        self.output.mark(self.crashes.count(first), stop)
        return True

    def _assigned(self, committed: dict[Partition, tuple[int, str]]) -> None:
        core = self.crashes.assigned(committed)
        if self.state is not None:
            self.state.assign({partition for _, partition in committed})
        if self.core_assign is not None:
            self.core_assign(core)

    def _revoked(self, partitions: list[Partition], lost: bool) -> None:
        """Partitions handed back (a rebalance, a stop): the open transaction is committed first (else what
        it sent is read again after the rebalance); this life ended cleanly on them, so it takes back
        its crash count (see :meth:`Crashes.revoked`)."""
        if self.commits.span is not None and not self._rewinding and not self._commit_span(self.stop):
            self._undo(0)
            self._span_lost = True
        if not self._rewinding:  # a rewind reads the same partitions again in the same life
            self.output.mark(self.crashes.revoked(partitions), threading.Event())
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
