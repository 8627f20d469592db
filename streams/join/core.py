"""The join core: the features, prediction and label of one event_id in, one outcome out.

No Kafka here. The agent shell hands over batches of records from the co-partitioned features,
predictions, shadow-predictions and labels topics, in any arrival order, and sends what comes back.

State is one :class:`Entry` per event_id, kept until ``ttl_ms`` of stream time (the largest record
timestamp seen) after its first record, or until ``max_pending`` newer entries push it out. An
entry emits one outcome for the serving prediction and one for the shadow prediction, each once
all three parts are there; a repeated part is counted and ignored. A label that is not one of the
predicting version's classes is dead-lettered (``unknown-label``) instead of scored as wrong.

Stream time is bounded by the wall clock: a record stamped more than ``max_skew_ms`` ahead of this
worker's clock is dead-lettered (``future-timestamp``) and moves nothing, so no single record can
expire the state at once. A record stamped far in the past is taken as it is (and expires).

Restarts: the shell commits, per input partition, the offset of the oldest record still held in
state (:meth:`JoinCore.positions`), with the offset reached so far as commit metadata. A restarted
worker re-reads from the commit and so rebuilds its state; :meth:`JoinCore.assign` passes the
reached offsets back, and an outcome whose parts all lie below them (or a dead letter of a record
below them) was sent before, so it is not sent again. Until the new worker has read every
partition up to its reached offset it withholds its outputs and commits nothing (see :meth:`JoinCore.assign`).
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.codec import Codec, CodecError
from streams.deadletters import DeadLetters
from streams.quality import LOG_LOSS_FLOOR, SlidingMean
from streams.records import KeyValue, Produced, SourceRecord, Topic

__all__ = ["Entry", "JoinCore", "JoinOutput", "JoinTopics"]

Partition = tuple[str, int]
Part = tuple[dict[str, Any], Partition, int]  # decoded record, its partition and offset
RawPart = tuple[bytes, Partition, int]  # features are held as bytes (a tenth of the memory) and decoded again to emit


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


@dataclass(eq=False)
class Entry:
    """Everything known about one event_id."""

    event_id: str
    partition: int
    deadline_ms: int
    features: RawPart | None = None
    label: Part | None = None
    label_record: SourceRecord | None = None
    """The label as it came, until checked against the predicting version's classes (to dead-letter it)."""
    predictions: dict[bool, Part] = field(default_factory=dict)
    """shadow flag → the prediction part."""
    emitted: set[bool] = field(default_factory=set)
    live: bool = True


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

    @property
    def outcomes(self) -> list[KeyValue]:
        return self.to(Topic.OUTCOMES)


class JoinCore:
    """Joins features, predictions and labels by event_id in bounded state.

    Args:
        topics: the input topic names.
        classes: the class names of a (model, version), in score order; raises KeyError for an
            unknown version.
        ttl_ms: how long an entry waits for its other parts (the longest label delay).
        max_pending: the most entries held; beyond it the oldest are evicted.
        quality_window: predictions per version in the label-rate window.
        max_skew_ms: how far ahead of ``clock_ms`` a record's timestamp may be.
        clock_ms: the wall clock in epoch milliseconds (replaceable in tests).
    """

    def __init__(
        self,
        topics: JoinTopics,
        classes: Callable[[str, int], Sequence[str]],
        ttl_ms: int,
        max_pending: int,
        quality_window: int,
        max_skew_ms: int = 300_000,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.topics, self.classes, self.ttl_ms, self.max_pending = topics, classes, ttl_ms, max_pending
        self.quality_window, self.max_skew_ms, self.clock_ms = quality_window, max_skew_ms, clock_ms
        self.codecs = {
            topics.features: Codec.load("features"),
            topics.predictions: Codec.load("prediction"),
            topics.shadow_predictions: Codec.load("prediction"),
            topics.labels: Codec.load("label"),
        }
        self.outcome_codec = Codec.load("outcome")
        self.dead = DeadLetters("join")
        self.entries: dict[str, Entry] = {}
        self.by_age: deque[Entry] = deque()
        self.held: dict[Partition, deque[tuple[int, Entry]]] = {}
        self.reached: dict[Partition, int] = {}
        self.replay_until: dict[Partition, int] = {}
        self.catching_up: set[Partition] = set()
        self.withheld = Produced()
        self.label_rate: dict[tuple[str, int], SlidingMean] = {}
        self.now_ms = 0

    def assign(self, committed: dict[Partition, tuple[int, int]]) -> None:
        """New input partitions: each one's committed offset and the offset reached before (commit metadata).

        Until every one of them is read again up to its reached offset, the state is behind the
        one that was committed, and an outcome completed meanwhile may lie above one partition's
        reached offset but below another's. So while catching up the core withholds what it
        makes and :meth:`positions` commits nothing: a worker killed meanwhile leaves the commit
        as it was, and its successor catches up the same way. The withheld records go out with
        the batch that completes the catch-up.
        """
        for tp, (offset, reached) in committed.items():
            self.replay_until[tp] = reached
            if offset < reached:
                self.catching_up.add(tp)

    def revoke(self, partitions: Iterable[int]) -> None:
        """Forget the state of input partitions given to another worker."""
        gone = set(partitions)
        for entry in self.entries.values():
            if entry.partition in gone:
                entry.live = False
        self.entries = {k: e for k, e in self.entries.items() if e.live}
        self.catching_up = {tp for tp in self.catching_up if tp[1] not in gone}
        self.withheld.clear()  # revocations are eager: every partition goes, and its outputs with it
        self.by_age = deque(e for e in self.by_age if e.live)
        for tp in [tp for tp in self.reached if tp[1] in gone]:
            del self.reached[tp]
            self.held.pop(tp, None)
            self.replay_until.pop(tp, None)

    def positions(self) -> dict[Partition, tuple[int, int]]:
        """Per input partition: (offset to commit, offset reached) after the records processed so far;
        nothing while catching up after an assignment."""
        if self.catching_up:
            return {}
        result = {}
        for tp, reached in self.reached.items():
            held = self.held.get(tp, deque())
            while held and not held[0][1].live:
                held.popleft()
            result[tp] = (held[0][0] if held else reached, reached)
        return result

    def process(self, records: Sequence[SourceRecord]) -> JoinOutput:
        """Join one batch of records from any of the input topics."""
        out = JoinOutput()
        horizon = self.clock_ms() + self.max_skew_ms
        for record in records:
            tp = (record.topic, record.partition)
            self.reached[tp] = max(self.reached.get(tp, 0), record.offset + 1)
            if record.timestamp_ms > horizon:
                ahead = record.timestamp_ms - horizon + self.max_skew_ms
                self._dead(out, record, "future-timestamp", f"its Kafka timestamp {record.timestamp_ms} is {ahead} ms "
                           f"ahead of the join's clock, more than the {self.max_skew_ms} ms allowed")  # fmt: skip
                continue
            if record.timestamp_ms > self.now_ms:
                self.now_ms = record.timestamp_ms
                self._expire(out)
            try:
                decoded = self.codecs[record.topic].decode(record.value)
            except CodecError as exc:
                if record.topic == self.topics.features:
                    out.skipped += 1  # the inference agent dead-letters a bad feature event; once is enough
                else:
                    self._dead(out, record, exc.reason, str(exc))
                continue
            except KeyError:
                self._dead(out, record, "unknown-topic", f"the join does not read {record.topic}")
                continue
            self._add(out, record, decoded)
        self._expire(out)
        self.catching_up = {tp for tp in self.catching_up if self.reached.get(tp, 0) < self.replay_until[tp]}
        if self.catching_up:
            self.withheld.absorb(out)
            out.clear()
        elif self.withheld.records:
            self.withheld.absorb(out)
            out.clear()
            out.absorb(self.withheld)
            self.withheld.clear()
        return out

    def _dead(self, out: JoinOutput, record: SourceRecord, reason: str, error: str) -> None:
        if record.offset < self.replay_until.get((record.topic, record.partition), 0):
            return  # sent before the restart
        self.dead.add(out, record, reason, error)

    def _add(self, out: JoinOutput, record: SourceRecord, decoded: dict[str, Any]) -> None:
        if record.topic in (self.topics.predictions, self.topics.shadow_predictions):
            try:
                self.classes(decoded["model_name"], decoded["model_version"])
            except KeyError:
                name, version = decoded["model_name"], decoded["model_version"]
                self._dead(out, record, "unknown-model-version", f"no version {version} of {name} is registered")
                return
        entry = self.entries.get(decoded["event_id"])
        if entry is None:
            entry = Entry(decoded["event_id"], record.partition, record.timestamp_ms + self.ttl_ms)
            self.entries[entry.event_id] = entry
            self.by_age.append(entry)
        part: Part = (decoded, (record.topic, record.partition), record.offset)
        if record.topic == self.topics.features:
            duplicate = entry.features is not None
            entry.features = entry.features or (record.value, part[1], part[2])
        elif record.topic == self.topics.labels:
            duplicate = entry.label is not None
            if not duplicate:
                entry.label, entry.label_record = part, record
        else:
            shadow = bool(decoded["shadow"])
            duplicate = shadow in entry.predictions
            entry.predictions.setdefault(shadow, part)
        if duplicate:
            out.duplicates += 1
            return
        tp = (record.topic, record.partition)
        if tp not in self.held:
            self.held[tp] = deque()
        self.held[tp].append((record.offset, entry))
        self._emit(out, entry, record)

    def _emit(self, out: JoinOutput, entry: Entry, record: SourceRecord) -> None:
        """The outcomes ``entry`` completes now that ``record`` came; each names ``record`` as its input."""
        if entry.features is None or entry.label is None:
            return
        for shadow, prediction in entry.predictions.items():
            if shadow in entry.emitted:
                continue
            entry.emitted.add(shadow)
            model, version = prediction[0]["model_name"], prediction[0]["model_version"]
            parts = (entry.features, prediction, entry.label)
            sent = all(offset < self.replay_until.get(tp, 0) for _, tp, offset in parts)  # before the restart
            classes = self.classes(model, version)
            truth = entry.label[0]["label"]
            if truth not in classes:
                if not sent and entry.label_record is not None:
                    self.dead.add(out, entry.label_record, "unknown-label",
                                  f"label {truth!r} is not one of version {version} of {model}'s classes {list(classes)}")  # fmt: skip
                entry.label_record = None  # one dead letter per label
                continue
            entry.label_record = None  # a valid label: no longer needed (entries are held a whole TTL)
            rate = self._label_rate(model, version)
            if not shadow:
                rate.add(1.0)
                out.label_rates[(model, version)] = rate.mean
            if sent:
                continue
            value = self.outcome_codec.encode(
                self._outcome(
                    self.codecs[self.topics.features].decode(entry.features[0]),
                    prediction[0],
                    entry.label[0],
                    rate.mean,
                )
            )
            out.send(Topic.OUTCOMES, model.encode(), value, source=record)

    def _outcome(
        self, features: dict[str, Any], prediction: dict[str, Any], label: dict[str, Any], label_rate: float
    ) -> dict[str, Any]:
        classes = list(self.classes(prediction["model_name"], prediction["model_version"]))
        scores = prediction["scores"]
        truth = label["label"]
        score = scores[classes.index(truth)] if len(scores) == len(classes) else 0.0
        event_time = features["event_time"]
        return {
            "event_id": features["event_id"],
            "event_time": event_time,
            "entity_id": features["entity_id"],
            "values": features["values"],
            "model_name": prediction["model_name"],
            "model_version": prediction["model_version"],
            "shadow": prediction["shadow"],
            "scores": scores,
            "predicted_class": prediction["predicted_class"],
            "label": truth,
            "label_time": label["event_time"],
            "prediction_delay_ms": prediction["prediction_time"] - event_time,
            "label_delay_ms": label["event_time"] - event_time,
            "correct": prediction["predicted_class"] == truth,
            "log_loss": -math.log(max(score, LOG_LOSS_FLOOR)),
            "label_rate": label_rate,
        }

    def _label_rate(self, model: str, version: int) -> SlidingMean:
        key = (model, version)
        if key not in self.label_rate:
            self.label_rate[key] = SlidingMean(self.quality_window)
        return self.label_rate[key]

    def _expire(self, out: JoinOutput) -> None:
        while self.by_age and (self.by_age[0].deadline_ms < self.now_ms or len(self.entries) > self.max_pending):
            entry = self.by_age.popleft()
            if not entry.live:
                continue
            entry.live = False
            del self.entries[entry.event_id]
            if not entry.emitted:
                missing = "prediction" if not entry.predictions else "label" if entry.label is None else "features"
                out.expired["evicted" if entry.deadline_ms >= self.now_ms else f"no-{missing}"] += 1
            serving = entry.predictions.get(False)
            if serving is not None and entry.label is None:
                model, version = serving[0]["model_name"], serving[0]["model_version"]
                rate = self._label_rate(model, version)
                rate.add(0.0)
                out.label_rates[(model, version)] = rate.mean
