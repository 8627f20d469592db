"""The join core: the features, prediction and label of one event_id in, one outcome out.

No Kafka here. The agent shell hands over batches of records from the co-partitioned features,
predictions, shadow-predictions and labels topics, in any arrival order, and sends what comes back.

State is one entry per event_id in the :class:`~loopline.state.state.State` of the record's
partition (the topics are co-partitioned, so an event's parts share a partition number): it holds
the parts as they came until the outcome of every prediction it holds is sent, the serving one
included, and is then deleted. An entry that waits longer than ``ttl_ms`` of record time (the
largest record timestamp seen) after its first record came expires, and so do the oldest ones beyond
``max_pending``; a repeated part of a held entry is counted and ignored. A label whose entry leaves
without an outcome is dead-lettered with what its event missed (``no-prediction``, ``no-features``)
or ``evicted``: every label ends as an outcome or a dead letter. A label that is not one of
the predicting version's classes is dead-lettered (``unknown-label``) instead of scored as wrong.
An entry is deleted at the end of the batch that sent its last outcome: a shadow prediction that
comes in a later batch than its event's serving outcome finds no entry any more, waits alone and
expires (``no-label``); so does a part sent again after its event's outcome (and an event sent
again whole is joined again: it is a new event).

Record time is bounded by the wall clock: a record stamped more than ``max_skew_ms`` ahead of this
worker's clock is dead-lettered (``future-timestamp``) and moves nothing, so no single record can
expire the state at once. A record stamped in the past (a replay, a producer's clock, a timestamp
of 1 ms or below zero) waits from the record time at which it came, not from its stamp: its
timestamp moves no clock and expires nothing early.

The entries are held as :mod:`loopline.join.pending` describes. Every change of an entry goes to
the join's changelog in the transaction of the batch's outcomes and input offsets: a restarted or
newly assigned worker restores the entries and reads on from the committed offsets, with nothing to
re-read and nothing sent twice; :meth:`JoinCore.assigned` rebuilds the expiry index and the count of
entries from the restored entries. The label-rate windows are this worker's own (in memory): they
start empty after a restart.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from loopline.codec import Codec, CodecError
from loopline.codec.typed import Vectoriser
from loopline.deadletters import DeadLetters
from loopline.join.entry import ENTRY_OVERHEAD, SERVING, SHADOW, Entry
from loopline.join.outcome import outcome
from loopline.join.pending import Touched, by_deadline, reindex
from loopline.quality import SlidingMean
from loopline.records import KeyValue, Produced, SourceRecord, Topic
from loopline.state.state import State

__all__ = ["JoinCore", "JoinOutput", "JoinTopics"]


@dataclass(frozen=True)
class JoinTopics:
    """The four input topics of the join (full names, prefix included)."""

    features: str
    predictions: str
    shadow_predictions: str
    labels: str

    @property
    def all(self) -> list[str]:
        return [self.features, self.predictions, self.shadow_predictions, self.labels]


@dataclass
class JoinOutput(Produced):
    """What one batch produced."""

    duplicates: int = 0
    skipped: int = 0
    """Undecodable feature events: the inference agent dead-letters those."""
    expired: Counter[str] = field(default_factory=Counter)
    """Why entries left the state without any outcome: no-prediction, no-label, no-features, or evicted
    (pushed out by ``max_pending`` before their time)."""
    label_rates: dict[tuple[str, int], float] = field(default_factory=dict)
    """(model, version) → label rate now, for the versions this batch touched."""
    pending: int = 0
    """Entries held after the batch, in every partition of this worker."""

    @property
    def outcomes(self) -> list[KeyValue]:
        return self.to(Topic.OUTCOMES)


class JoinCore:
    """Joins features, predictions and labels by event_id in bounded state.

    Args:
        topics: the input topic names.
        classes: the class names of a (model, version), in score order; raises KeyError for an
            unknown version.
        state: where the entries are held, per input partition.
        ttl_ms: how long an entry waits for its other parts (the longest label delay).
        max_pending: the most entries held; beyond it the oldest are evicted.
        quality_window: predictions per version in the label-rate window.
        max_skew_ms: how far ahead of ``clock_ms`` a record's timestamp may be.
        max_entry_bytes: the largest entry held (a changelog record); a part that would make one
            larger is dead-lettered (``too-large``).
        clock_ms: the wall clock in epoch milliseconds (replaceable in tests).
        typed: the vectoriser of a version with typed inputs, None for a dense one: the outcome's
            values are the row that version was served.
    """

    def __init__(
        self,
        topics: JoinTopics,
        classes: Callable[[str, int], Sequence[str]],
        state: State,
        ttl_ms: int,
        max_pending: int,
        quality_window: int,
        max_skew_ms: int = 300_000,
        max_entry_bytes: int = 16 * 1024 * 1024 - 1024,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        typed: Callable[[str, int], Vectoriser | None] = lambda model, version: None,
    ) -> None:
        self.topics, self.classes, self.state, self.ttl_ms = topics, classes, state, ttl_ms
        self.typed = typed
        self.max_pending, self.quality_window, self.max_skew_ms = max_pending, quality_window, max_skew_ms
        self.max_entry_bytes, self.clock_ms = max_entry_bytes, clock_ms
        self.codecs = {
            topics.features: Codec.load("features"),
            topics.predictions: Codec.load("prediction"),
            topics.shadow_predictions: Codec.load("prediction"),
            topics.labels: Codec.load("label"),
        }
        self.outcome_codec = Codec.load("outcome")
        self.dead = DeadLetters("join")
        self.label_rate: dict[tuple[str, int], SlidingMean] = {}
        self.counts: dict[int, int] = {}
        self.now_ms = 0

    def assigned(self, committed: dict[tuple[str, int], tuple[int, str]]) -> None:
        """Partitions given to this worker, their stores restored: rebuild each one's expiry index and count,
        and take the record time up to when the newest restored entry came.

        Wired as the batch loop's ``on_assign``, which runs after the state restored the stores.
        """
        for partition in sorted({partition for _, partition in committed}):
            count, latest = reindex(self.state.stores[partition])
            if latest is not None:
                self.now_ms = max(self.now_ms, latest - self.ttl_ms)  # the clock when its newest entry came
            self.counts[partition] = count

    def revoked(self, partitions: list[tuple[str, int]], lost: bool) -> None:
        """Partitions taken from this worker (the batch loop's ``on_revoke``)."""
        for _, partition in partitions:
            self.counts.pop(partition, None)

    def process(self, records: Sequence[SourceRecord]) -> JoinOutput:
        """Join one batch of records from any of the input topics."""
        out = JoinOutput()
        touched = Touched(self.state, self.topics.labels, self.counts)
        horizon = self.clock_ms() + self.max_skew_ms
        for record in records:
            if record.timestamp_ms > horizon:
                ahead = record.timestamp_ms - horizon + self.max_skew_ms
                self.dead.add(out, record, "future-timestamp", f"its Kafka timestamp {record.timestamp_ms} is {ahead} "
                              f"ms ahead of the join's clock, more than the {self.max_skew_ms} ms allowed")  # fmt: skip
                continue
            self.now_ms = max(self.now_ms, record.timestamp_ms)
            try:
                decoded = self.codecs[record.topic].decode(record.value)
            except CodecError as exc:
                if record.topic == self.topics.features:
                    out.skipped += 1  # the inference agent dead-letters a bad feature event; once is enough
                else:
                    self.dead.add(out, record, exc.reason, str(exc))
                continue
            except KeyError:
                self.dead.add(out, record, "unknown-topic", f"the join does not read {record.topic}")
                continue
            self._add(out, touched, record, decoded)
        for (partition, event_id), entry in list(touched.entries.items()):
            if (
                entry is not None and entry.done
            ):  # at the batch's end: a shadow prediction in the same batch still joins
                touched.delete(partition, event_id, entry)
        self._expire(out, touched)
        touched.save()
        self.counts = touched.counts
        out.pending = sum(self.counts.values())
        return out

    def _add(self, out: JoinOutput, touched: Touched, record: SourceRecord, decoded: dict[str, Any]) -> None:
        topics = self.topics
        if record.topic in (topics.predictions, topics.shadow_predictions):
            try:
                self.classes(decoded["model_name"], decoded["model_version"])
            except KeyError:
                name, version = decoded["model_name"], decoded["model_version"]
                self.dead.add(out, record, "unknown-model-version", f"no version {version} of {name} is registered")
                return
        event_id, partition = decoded["event_id"], record.partition
        entry = touched.get(partition, event_id)
        if entry is not None and entry.deadline_ms < self.now_ms:  # its time ran out before this part came
            self._drop(out, touched, partition, event_id, entry)
            entry = None
        held = entry.size if entry is not None else ENTRY_OVERHEAD + len(event_id)
        if held + len(record.value) + len(record.key or b"") > self.max_entry_bytes:
            self.dead.add(out, record, "too-large", f"with this record the join would hold more than "
                          f"{self.max_entry_bytes} bytes of event {event_id!r}")  # fmt: skip
            return
        if entry is None:
            entry = touched.create(partition, event_id, self.now_ms + self.ttl_ms)  # now_ms >= its timestamp
        if record.topic == topics.features:
            duplicate = entry.features is not None
            entry.features = entry.features or record.value
        elif record.topic == topics.labels:
            duplicate = entry.label is not None
            entry.label = entry.label or record
        elif decoded["shadow"]:
            duplicate = entry.shadow is not None
            entry.shadow = entry.shadow or record.value
        else:
            duplicate = entry.prediction is not None
            entry.prediction = entry.prediction or record.value
        if duplicate:
            out.duplicates += 1
            return
        touched.changed(partition, event_id)
        self._emit(out, entry, record)

    def _emit(self, out: JoinOutput, entry: Entry, record: SourceRecord) -> None:
        """The outcomes ``entry`` completes now that ``record`` came; each names ``record`` as its input."""
        if entry.features is None or entry.label is None:
            return
        label = self.codecs[self.topics.labels].decode(entry.label.value)
        for bit, value in ((SERVING, entry.prediction), (SHADOW, entry.shadow)):
            if value is None or entry.sent & bit:
                continue
            entry.sent |= bit
            prediction = self.codecs[self.topics.predictions].decode(value)
            model, version = prediction["model_name"], prediction["model_version"]
            classes = self.classes(model, version)
            truth = label["label"]
            if truth not in classes:
                self.dead.add(out, entry.label, "unknown-label",
                              f"label {truth!r} is not one of version {version} of {model}'s classes {list(classes)}")  # fmt: skip
                continue
            rate = self._label_rate(model, version)
            if bit == SERVING:
                rate.add(1.0)
                out.label_rates[(model, version)] = rate.mean
            features = self.codecs[self.topics.features].decode(entry.features)
            typed = self.typed(model, version)
            if typed is not None:  # the outcome carries the row the version was served, as training reads it
                try:
                    features["values"] = typed.row(features["fields"])
                except CodecError as exc:
                    self.dead.add(out, entry.label, exc.reason, f"version {version} of {model}: {exc}")
                    continue
            encoded = self.outcome_codec.encode(outcome(features, prediction, label, classes, rate.mean))
            out.send(Topic.OUTCOMES, model.encode(), encoded, source=record)

    def _label_rate(self, model: str, version: int) -> SlidingMean:
        key = (model, version)
        if key not in self.label_rate:
            self.label_rate[key] = SlidingMean(self.quality_window)
        return self.label_rate[key]

    def _expire(self, out: JoinOutput, touched: Touched) -> None:
        """Drop the entries past their deadline, then the oldest beyond ``max_pending``."""
        partitions = self.state.partitions
        total = sum(touched.counts.values())
        oldest = heapq.merge(*(by_deadline(self.state, partition) for partition in partitions))
        for deadline, partition, event_id in oldest:
            if deadline >= self.now_ms and total <= self.max_pending:
                return
            entry = touched.get(partition, event_id)
            if entry is not None:  # else deleted by this batch after the iteration began
                self._drop(out, touched, partition, event_id, entry)
                total -= 1

    def _drop(self, out: JoinOutput, touched: Touched, partition: int, event_id: str, entry: Entry) -> None:
        """Delete an entry whose time ran out (or that ``max_pending`` pushed out), counting what it missed."""
        touched.delete(partition, event_id, entry)
        if not entry.sent:
            missing = "prediction" if entry.prediction is None and entry.shadow is None else \
                "label" if entry.label is None else "features"  # fmt: skip
            reason = "evicted" if entry.deadline_ms >= self.now_ms else f"no-{missing}"
            out.expired[reason] += 1
            if entry.label is not None:
                why = (f"the join held more than {self.max_pending} events and this one was the oldest"
                       if reason == "evicted" else f"no {missing} of event {event_id!r} came within "
                       f"{self.ttl_ms} ms of record time")  # fmt: skip
                self.dead.add(out, entry.label, reason, why)
        if entry.prediction is not None and entry.label is None:
            prediction = self.codecs[self.topics.predictions].decode(entry.prediction)
            model, version = prediction["model_name"], prediction["model_version"]
            rate = self._label_rate(model, version)
            rate.add(0.0)
            out.label_rates[(model, version)] = rate.mean
