"""The drift core: outcomes and predictions in, drift events, retrain requests and online quality out.

No Kafka here. Outcomes are keyed by model name, so all the outcomes of a model land in one
outcomes partition: concept drift (:class:`ErrorMonitor` on the serving version's errors) and
covariate drift (:class:`BlockMonitor` on its feature values) mean the same with one worker or
several. Prediction drift reads the predictions topic, keyed by event_id: each predictions
partition is a uniform sample of the stream, so each has monitors of its own, which say the same
as monitors on the whole stream would, a little later. It works before any label arrives and is
recorded as a drift event, but it never requests a retrain on its own: a retrain needs labeled
outcomes of the new world, which concept and covariate drift wait for.

Every detection becomes a drift event. A concept or covariate detection also becomes a retrain
request unless the model had one within the last ``cooldown_samples`` outcomes, so that one drift
makes one request. A requested drift opens the model's recovery (:mod:`loopline.drift.recovery`):
the agent asks again, for a training on all the data since the detection, while the serving
version's error stays above the model's error before the drift.

State
-----
Everything is kept per input partition number (the ``partition`` of each record): the outcome
monitors, quality windows, outcome count and last request of the models whose outcomes land in
it, and the prediction monitors of the predictions it holds. :meth:`DriftCore.changes` hands out,
after each batch, the keys of each partition's state that changed, for a store to save with the
batch; :meth:`DriftCore.restore` rebuilds a partition from all its keys, and the core then goes on
exactly as the one that saved them would have (up to the monitors' history caps). Keys are ASCII,
the model name JSON-encoded (so a ``/`` in it is no separator):

- ``m/<model>``: ``{"format": 1, "outcomes_seen": n, "requested_at": position or null, "recovery":
  recovery or null}``, the outcomes of the model seen so far, the position of its last retrain
  request (the cooldown) and its recovery (:meth:`Recovery.state`; absent in older states).
- ``q/<model>/<version>/<shadow 0|1>``: ``{"format": 1, "accuracy": window, "log_loss": window}``,
  the quality windows (:meth:`SlidingMean.state`).
- ``w/<model>/<version>/head``: ``{"format": 1, "order": n, "outcomes": span, "predictions": span}``,
  a version's watch: ``order`` ranks the watches by creation, which eviction goes by; a span is
  ``{"first_ms": time or null, "ranges": [[topic, partition, start, end], ...]}``, what the
  monitors saw, for evidence.
- ``w/<model>/<version>/<monitor>/<key>``: the state of its ``errors`` and ``features`` (outcome)
  and ``scores`` (prediction) monitors, under the keys of :mod:`loopline.drift.monitor`.

A watch evicted (beyond :data:`VERSIONS_KEPT`) has its keys deleted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from loopline.codec import Codec, CodecError
from loopline.codec.checks import clamp_time
from loopline.codec.outcomes import OutcomeReader
from loopline.codec.typed import numeric_columns
from loopline.deadletters import DeadLetters
from loopline.drift.monitor import BlockMonitor, Changes, Detection, ErrorMonitor, dump_head, load_head
from loopline.drift.recovery import Recovery, check, opened
from loopline.models import ModelVersion
from loopline.quality import SlidingMean
from loopline.records import KeyValue, Produced, SourceRecord, Topic
from loopline.settings import DriftSettings

__all__ = ["DriftCore", "DriftOutput"]

Monitor = TypeVar("Monitor", ErrorMonitor, BlockMonitor)
"""Either monitor: restoring one gives back the same kind."""

VERSIONS_KEPT = 4  # watches kept per model and partition: the serving version and a few it replaced


@dataclass
class DriftOutput(Produced):
    """What one batch produced."""

    kinds: list[str] = field(default_factory=list)
    """The kind of each drift event."""
    quality: dict[tuple[str, int, bool], tuple[float, float]] = field(default_factory=dict)
    """(model, version, shadow) → (accuracy, log loss) over the window, for the versions this batch touched."""

    @property
    def drift_events(self) -> list[KeyValue]:
        return self.to(Topic.DRIFT_EVENTS)

    @property
    def retrain_requests(self) -> list[KeyValue]:
        return self.to(Topic.RETRAIN_REQUESTS)


class Span:
    """What monitors have seen: the time of their first record and the offset range per partition."""

    def __init__(self) -> None:
        self.first_ms: int | None = None
        self.ranges: dict[tuple[str, int], tuple[int, int]] = {}

    def saw(self, records: Sequence[SourceRecord]) -> None:
        """Add a batch the monitors were updated with."""
        self.ranges = self._ranges(records)
        if records and self.first_ms is None:
            self.first_ms = records[0].timestamp_ms

    def state(self) -> dict[str, Any]:
        return {"first_ms": self.first_ms, "ranges": [[*tp, *span] for tp, span in self.ranges.items()]}

    @classmethod
    def load(cls, state: dict[str, Any]) -> Span:
        span = cls()
        span.first_ms = state["first_ms"]
        span.ranges = {(topic, partition): (start, end) for topic, partition, start, end in state["ranges"]}
        return span

    def _ranges(self, records: Sequence[SourceRecord]) -> dict[tuple[str, int], tuple[int, int]]:
        ranges = dict(self.ranges)
        for record in records:
            tp = (record.topic, record.partition)
            ranges[tp] = (ranges[tp][0] if tp in ranges else record.offset, record.offset)
        return ranges

    def evidence(self, kind: str, detector: str, detection: Detection, batch: Sequence[SourceRecord]) -> dict[str, Any]:
        """The evidence of ``detection``: everything seen up to the record that fired it."""
        seen = batch[: detection.index + 1]
        first_ms = self.first_ms if self.first_ms is not None else seen[0].timestamp_ms
        return {
            "kind": kind,
            "detector": detector,
            "feature": detection.column,
            "statistics": detection.statistics,
            "window_start": first_ms,
            "window_end": seen[-1].timestamp_ms,
            "samples": detection.samples,
            "offsets": [
                {"topic": topic, "partition": partition, "start": start, "end": end}
                for (topic, partition), (start, end) in sorted(self._ranges(seen).items())
            ],
        }


@dataclass
class VersionWatch:
    """The monitors of one serving model version in one partition: two on its outcomes, one on its predictions."""

    order: int
    """Watches made in the partition before this one: eviction drops the oldest."""
    errors: ErrorMonitor | None = None
    features: BlockMonitor | None = None
    outcomes: Span = field(default_factory=Span)
    scores: BlockMonitor | None = None
    predictions: Span = field(default_factory=Span)

    def monitors(self) -> dict[bytes, ErrorMonitor | BlockMonitor]:
        found = {b"errors": self.errors, b"features": self.features, b"scores": self.scores}
        return {name: monitor for name, monitor in found.items() if monitor is not None}


@dataclass
class PartitionState:
    """What the records of one input partition number built, and what of it is still to be saved."""

    watches: dict[tuple[str, int], VersionWatch] = field(default_factory=dict)
    quality: dict[tuple[str, int, bool], tuple[SlidingMean, SlidingMean]] = field(default_factory=dict)
    outcomes_seen: dict[str, int] = field(default_factory=dict)
    requested_at: dict[str, int] = field(default_factory=dict)
    recovery: dict[str, Recovery] = field(default_factory=dict)
    made: int = 0
    """Watches made so far (the next one's order)."""
    stored: set[bytes] = field(default_factory=set)
    """The keys saved."""
    dirty: set[tuple[Any, ...]] = field(default_factory=set)
    """What changed since the last save: ("w", model, version), ("q", model, version, shadow), ("m", model)."""
    stale: set[bytes] = field(default_factory=set)
    """Prefixes of keys to delete at the next save (evicted watches, monitors that were not restored)."""


class DriftCore:
    """Drift detection and online quality for every model in the outcome stream.

    Args:
        settings: detectors, thresholds, warm-up and cooldown.
        outcomes_topic: full name of the outcomes topic (anything else read is a prediction).
        lookup: the registered version ``(model, version)``; raises KeyError for an unknown one.
    """

    def __init__(
        self, settings: DriftSettings, outcomes_topic: str, lookup: Callable[[str, int], ModelVersion]
    ) -> None:
        self.settings, self.outcomes_topic, self.lookup = settings, outcomes_topic, lookup
        self.outcomes = OutcomeReader(Codec.load("outcome"))
        self.prediction_codec = Codec.load("prediction")
        self.drift_codec = Codec.load("drift_event")
        self.request_codec = Codec.load("retrain_request")
        self.dead = DeadLetters("drift")
        self.partitions: dict[int, PartitionState] = {}

    def process(self, records: Sequence[SourceRecord]) -> DriftOutput:
        """Check one batch of outcome and prediction records."""
        out = DriftOutput()
        outcomes: dict[tuple[int, str, int], list[tuple[SourceRecord, dict[str, Any]]]] = {}
        predictions: dict[tuple[int, str, int], list[tuple[SourceRecord, dict[str, Any]]]] = {}
        for record in records:
            is_outcome = record.topic == self.outcomes_topic
            part = self.partitions.get(record.partition)
            if part is None:
                part = self.partitions[record.partition] = PartitionState()
            try:
                decoded = self.outcomes.read(record.value) if is_outcome else self.prediction_codec.decode(record.value)
                key = (decoded["model_name"], decoded["model_version"])
                if decoded["shadow"]:
                    self.lookup(*key)  # shadow versions only feed the quality windows
                else:
                    self._watch(part, *key)
            except CodecError as exc:
                self.dead.add(out, record, exc.reason, str(exc))
                continue
            except KeyError:
                self.dead.add(out, record, "unknown-model-version", "no such version is registered")
                continue
            if is_outcome:
                self._quality(part, out, decoded)
            if not decoded["shadow"]:
                groups = outcomes if is_outcome else predictions
                groups.setdefault((record.partition, *key), []).append((record, decoded))
        for (partition, model, version), group in outcomes.items():
            self._outcomes(out, self.partitions[partition], (model, version), group)
        for (partition, model, version), group in predictions.items():
            self._predictions(out, self.partitions[partition], (model, version), group)
        return out

    def changes(self) -> dict[int, Changes]:
        """Per partition, the keys of its state that changed since the last call (None: deleted).

        Call it after each :meth:`process`: the state of a partition is only worth saving with the
        batch that made it. Only what changed is serialised, so a batch costs its own size plus the
        heads, not the size of the histories.
        """
        return {number: self._save(part) for number, part in self.partitions.items() if part.dirty or part.stale}

    def restore(self, partition: int, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Rebuild the state of ``partition`` from every key :meth:`changes` left for it, in any order.

        Raises:
            ValueError: a key in a format this code does not know.
        """
        part = self.partitions[partition] = PartitionState()
        watches: dict[tuple[str, int], dict[bytes, dict[bytes, bytes]]] = {}
        for key, value in items:
            part.stored.add(key)
            kind, model, rest = _parse(key)
            if kind == b"m":
                head = load_head(value)
                part.outcomes_seen[model] = head["outcomes_seen"]
                if head["requested_at"] is not None:
                    part.requested_at[model] = head["requested_at"]
                if head.get("recovery") is not None:
                    part.recovery[model] = Recovery.load(head["recovery"])
            elif kind == b"q":
                head = load_head(value)
                windows = SlidingMean(self.settings.quality_window), SlidingMean(self.settings.quality_window)
                windows[0].load(head["accuracy"])
                windows[1].load(head["log_loss"])
                part.quality[(model, int(rest[0]), rest[1] == b"1")] = windows
            else:
                version, name, *tail = rest
                watches.setdefault((model, int(version)), {}).setdefault(name, {})[b"/".join(tail)] = value
        restored = [self._restored(part, key, parts) for key, parts in watches.items()]
        for watch_key, watch in sorted(restored, key=lambda kw: kw[1].order):
            part.watches[watch_key] = watch
        part.made = max((watch.order for watch in part.watches.values()), default=-1) + 1

    def revoke(self, partitions: Iterable[int]) -> None:
        """Forget the state of ``partitions`` (another worker reads them now), unsaved changes included."""
        for partition in partitions:
            self.partitions.pop(partition, None)

    def _save(self, part: PartitionState) -> Changes:
        changed: Changes = {}
        head: dict[str, Any]
        for prefix in part.stale:
            changed.update((key, None) for key in part.stored if key.startswith(prefix))
        for item in part.dirty:
            kind, model = item[0], item[1]
            if kind == "m":
                recovery = part.recovery.get(model)
                head = {"outcomes_seen": part.outcomes_seen[model], "requested_at": part.requested_at.get(model),
                        "recovery": None if recovery is None else recovery.state()}  # fmt: skip
                changed[b"m/" + _name(model)] = dump_head(head)
            elif kind == "q":
                accuracy, loss = part.quality[item[1:]]
                head = {"accuracy": accuracy.state(), "log_loss": loss.state()}
                changed[b"q/%s/%d/%d" % (_name(model), item[2], item[3])] = dump_head(head)
            elif (watch := part.watches.get(item[1:])) is not None:  # not evicted since
                prefix = _watch_prefix(model, item[2])
                head = {"order": watch.order, "outcomes": watch.outcomes.state(),
                        "predictions": watch.predictions.state()}  # fmt: skip
                changed[prefix + b"head"] = dump_head(head)
                for name, monitor in watch.monitors().items():
                    changed.update((prefix + name + b"/" + key, value) for key, value in monitor.changes().items())
        part.dirty.clear()
        part.stale.clear()
        for key, value in changed.items():
            if value is None:
                part.stored.discard(key)
            else:
                part.stored.add(key)
        return changed

    def _restored(
        self, part: PartitionState, key: tuple[str, int], parts: dict[bytes, dict[bytes, bytes]]
    ) -> tuple[tuple[str, int], VersionWatch]:
        """The watch ``key`` from its keys, grouped by monitor (``b"head"`` for its own)."""
        head = load_head(parts[b"head"][b""])
        watch = VersionWatch(
            head["order"], outcomes=Span.load(head["outcomes"]), predictions=Span.load(head["predictions"])
        )
        prefix, s = _watch_prefix(*key), self.settings
        if b"errors" in parts:
            watch.errors = _loaded(part, prefix + b"errors/", self._error_monitor(), parts[b"errors"])
        if b"features" in parts:
            monitor = self._block_monitor(_columns(parts[b"features"]), s.covariate_detector, s.covariate_params)
            watch.features = _loaded(part, prefix + b"features/", monitor, parts[b"features"])
        if b"scores" in parts:
            monitor = self._block_monitor(_columns(parts[b"scores"]), s.prediction_detector, s.prediction_params)
            watch.scores = _loaded(part, prefix + b"scores/", monitor, parts[b"scores"])
        return key, watch

    def _watch(self, part: PartitionState, model: str, version: int) -> VersionWatch:
        key = (model, version)
        watch = part.watches.get(key)
        if watch is None:
            self.lookup(model, version)  # a KeyError for an unknown version
            watch = part.watches[key] = VersionWatch(part.made)
            part.made += 1
            mine = [k for k in part.watches if k[0] == model]
            for old in mine[:-VERSIONS_KEPT]:
                del part.watches[old]
                part.stale.add(_watch_prefix(*old))
        return watch

    def _error_monitor(self) -> ErrorMonitor:
        s = self.settings
        return ErrorMonitor(s.concept_detector, s.concept_params, s.min_samples, s.recent_samples)

    def _block_monitor(self, columns: Sequence[str], detector: str, params: dict[str, int | float]) -> BlockMonitor:
        s = self.settings
        return BlockMonitor(columns, detector, params, s.min_samples, s.block_size, s.recent_samples)

    def _quality(self, part: PartitionState, out: DriftOutput, outcome: dict[str, Any]) -> None:
        key = (outcome["model_name"], outcome["model_version"], bool(outcome["shadow"]))
        if key not in part.quality:
            part.quality[key] = (SlidingMean(self.settings.quality_window), SlidingMean(self.settings.quality_window))
        part.dirty.add(("q", *key))
        accuracy, loss = part.quality[key]
        accuracy.add(1.0 if outcome["correct"] else 0.0)
        loss.add(outcome["log_loss"])
        out.quality[key] = (accuracy.mean, loss.mean)

    def _outcomes(
        self,
        out: DriftOutput,
        part: PartitionState,
        key: tuple[str, int],
        group: list[tuple[SourceRecord, dict[str, Any]]],
    ) -> None:
        model = key[0]
        watch = self._watch(part, *key)
        s = self.settings
        if watch.errors is None:
            watch.errors = self._error_monitor()
        version = self.lookup(*key)
        columns = numeric_columns(version.feature_types, len(version.feature_names))
        if watch.features is None:
            watch.features = self._block_monitor(
                [version.feature_names[c] for c in columns], s.covariate_detector, s.covariate_params
            )
        part.dirty.update((("w", *key), ("m", model)))
        sources = [record for record, _ in group]
        seen_before = part.outcomes_seen.get(model, 0)
        part.outcomes_seen[model] = seen_before + len(group)
        reference = watch.errors.reference  # the error rate before this batch's detections restart the monitor
        found = [
            ("concept", s.concept_detector, d)
            for d in watch.errors.update([0 if o["correct"] else 1 for _, o in group])
        ]
        values = np.array([o["values"] for _, o in group], dtype=np.float32).reshape(len(group), -1)
        if len(columns) != values.shape[1]:
            values = np.ascontiguousarray(values[:, columns])  # C order: the sums, and so the state, are the same
        found += [("covariate", s.covariate_detector, d) for d in watch.features.update(values)]
        for kind, detector, detection in sorted(found, key=lambda f: f[2].index):
            at = sources[detection.index]
            evidence = watch.outcomes.evidence(kind, detector, detection, sources)
            event_id = self._drift_event(out, key, evidence, detection, at)
            requested = part.requested_at.get(model)
            position = seen_before + detection.index
            if requested is None or position - requested >= s.cooldown_samples:
                part.requested_at[model] = position
                since = [{"topic": at.topic, "partition": at.partition, "offset": at.offset + 1}]
                baseline = detection.statistics["error_reference"] if kind == "concept" else reference
                part.recovery[model] = opened(position, since, baseline, part.recovery.get(model),
                                              s.follow_up_samples)  # fmt: skip
                self._request(out, model, event_id, at, _reason(kind, key[1], detection), evidence, since)
        watch.outcomes.saw(sources)
        self._follow_up(out, part, key, sources[-1])

    def _follow_up(self, out: DriftOutput, part: PartitionState, key: tuple[str, int], at: SourceRecord) -> None:
        """Ask again for ``key``'s model when its recovery says so (:func:`loopline.drift.recovery.check`)."""
        model, version = key
        recovery, s = part.recovery.get(model), self.settings
        if recovery is None or not s.follow_up_samples:
            return
        accuracy = part.quality[(model, version, False)][0]
        error, position = 1.0 - accuracy.mean, part.outcomes_seen[model]
        recovery, ask = check(recovery, position, error, len(accuracy), s.min_samples, s.follow_up_samples,
                              s.follow_up_max_samples)  # fmt: skip
        part.recovery[model] = recovery
        if not ask:
            return
        part.requested_at[model] = position
        before = "unknown" if recovery.baseline is None else f"{recovery.baseline:.3f}"
        reason = (f"follow-up {recovery.checks} of the drift at outcome {recovery.detected_at}: version {version}'s "
                  f"error {error:.3f} over its last {len(accuracy)} outcomes, {before} before the drift; "
                  f"training on the {position - recovery.detected_at} outcomes since")  # fmt: skip
        event_id = f"{model}/{version}/follow-up/{at.topic}/{at.partition}/{at.offset}"
        self._request(out, model, event_id, at, reason, None, recovery.since)

    def _request(
        self,
        out: DriftOutput,
        model: str,
        event_id: str,
        at: SourceRecord,
        reason: str,
        evidence: dict[str, Any] | None,
        since: list[dict[str, Any]],
    ) -> None:
        request = {
            "event_id": event_id,
            "event_time": clamp_time(at.timestamp_ms),  # a Kafka timestamp may lie outside what the schema stores
            "model_name": model,
            "reason": reason,
            "requested_by": "drift",
            "evidence": evidence,
            "since": since,
        }
        out.send(Topic.RETRAIN_REQUESTS, model.encode(), self.request_codec.encode(request))

    def _predictions(
        self,
        out: DriftOutput,
        part: PartitionState,
        key: tuple[str, int],
        group: list[tuple[SourceRecord, dict[str, Any]]],
    ) -> None:
        watch = self._watch(part, *key)
        part.dirty.add(("w", *key))
        if watch.scores is None:
            classes = self.lookup(*key).classes
            s = self.settings
            watch.scores = self._block_monitor(classes, s.prediction_detector, s.prediction_params)
        sources = [record for record, _ in group]
        scores = np.array([p["scores"] for _, p in group], dtype=np.float32)
        for detection in watch.scores.update(scores):
            evidence = watch.predictions.evidence("prediction", self.settings.prediction_detector, detection, sources)
            self._drift_event(out, key, evidence, detection, sources[detection.index])
        watch.predictions.saw(sources)

    def _drift_event(
        self, out: DriftOutput, key: tuple[str, int], evidence: dict[str, Any], detection: Detection, at: SourceRecord
    ) -> str:
        model, version = key
        kind = evidence["kind"]
        event_id = f"{model}/{version}/{kind}/{detection.column or 'error'}/{at.topic}/{at.partition}/{at.offset}"
        record = {
            "event_id": event_id,
            "event_time": clamp_time(at.timestamp_ms),  # a Kafka timestamp may lie outside what the schema stores
            "model_name": model,
            "model_version": version,
            "evidence": evidence,
        }
        out.send(Topic.DRIFT_EVENTS, model.encode(), self.drift_codec.encode(record))
        out.kinds.append(kind)
        return event_id


def _reason(kind: str, version: int, detection: Detection) -> str:
    stats = detection.statistics
    if kind == "concept":
        return (f"concept drift on version {version}: error rate {stats['error_reference']:.3f} → "
                f"{stats['error_recent']:.3f}")  # fmt: skip
    return (f"covariate drift on {detection.column}: mean {stats['mean_reference']:.3f} → {stats['mean_recent']:.3f} "
            f"({stats['shift_in_std']:+.2f} std)")  # fmt: skip


_JSON = json.JSONDecoder()


def _name(model: str) -> bytes:
    """The model name in keys: JSON, ASCII only, so that a ``/`` in it is no separator."""
    return json.dumps(model).encode()


def _watch_prefix(model: str, version: int) -> bytes:
    return b"w/%s/%d/" % (_name(model), version)


def _parse(key: bytes) -> tuple[bytes, str, list[bytes]]:
    """A key's kind (``m``, ``q`` or ``w``), model name, and the parts after the name."""
    model, end = _JSON.raw_decode(key.decode("ascii"), 2)
    return key[:1], model, key[end + 1 :].split(b"/") if end < len(key) else []


def _columns(items: dict[bytes, bytes]) -> list[str]:
    """The columns of the block monitor saved as ``items``."""
    columns: list[str] = load_head(items[b"head"])["config"]["columns"]
    return columns


def _loaded(part: PartitionState, prefix: bytes, monitor: Monitor, items: dict[bytes, bytes]) -> Monitor | None:
    """``monitor`` loaded from ``items``; None when they were saved under other settings (deleted at the next save)."""
    if monitor.load(items):
        return monitor
    part.stale.add(prefix)
    return None
