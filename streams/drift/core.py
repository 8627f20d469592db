"""The drift core: outcomes and predictions in, drift events, retrain requests and online quality out.

No Kafka here. Outcomes are keyed by model name, so one drift worker sees the whole outcome stream
of a model: concept drift (:class:`ErrorMonitor` on the serving version's errors) and covariate
drift (:class:`BlockMonitor` on its feature values) mean the same with one worker or several.
Prediction drift reads the predictions topic, keyed by event_id: each worker watches the
partitions it owns, a uniform sample of the stream. It works before any label arrives and is
recorded as a drift event, but it never requests a retrain on its own: a retrain needs labeled
outcomes of the new world, which concept and covariate drift wait for.

Every detection becomes a drift event. A concept or covariate detection also becomes a retrain
request unless the model had one within the last ``cooldown_samples`` outcomes, so that one drift
makes one request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models import ModelVersion
from streams.codec import Codec, CodecError
from streams.deadletters import DeadLetters
from streams.drift.monitor import BlockMonitor, Detection, ErrorMonitor
from streams.quality import SlidingMean
from streams.records import KeyValue, Produced, SourceRecord, Topic
from streams.settings import DriftSettings

__all__ = ["DriftCore", "DriftOutput"]

VERSIONS_KEPT = 4  # monitors kept per model: the serving version and a few it replaced


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
    """The monitors of one serving model version: two on its outcomes, one on its predictions."""

    errors: ErrorMonitor
    features: BlockMonitor
    outcomes: Span = field(default_factory=Span)
    scores: BlockMonitor | None = None
    predictions: Span = field(default_factory=Span)


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
        self.outcome_codec = Codec.load("outcome")
        self.prediction_codec = Codec.load("prediction")
        self.drift_codec = Codec.load("drift_event")
        self.request_codec = Codec.load("retrain_request")
        self.dead = DeadLetters("drift")
        self.watches: dict[tuple[str, int], VersionWatch] = {}
        self.quality: dict[tuple[str, int, bool], tuple[SlidingMean, SlidingMean]] = {}
        self.outcomes_seen: dict[str, int] = {}
        self.requested_at: dict[str, int] = {}

    def process(self, records: Sequence[SourceRecord]) -> DriftOutput:
        """Check one batch of outcome and prediction records."""
        out = DriftOutput()
        outcomes: dict[tuple[str, int], list[tuple[SourceRecord, dict[str, Any]]]] = {}
        predictions: dict[tuple[str, int], list[tuple[SourceRecord, dict[str, Any]]]] = {}
        for record in records:
            is_outcome = record.topic == self.outcomes_topic
            try:
                decoded = (self.outcome_codec if is_outcome else self.prediction_codec).decode(record.value)
                key = (decoded["model_name"], decoded["model_version"])
                if decoded["shadow"]:
                    self.lookup(*key)  # shadow versions only feed the quality windows
                else:
                    self._watch(*key)
            except CodecError as exc:
                self.dead.add(out, record, exc.reason, str(exc))
                continue
            except KeyError:
                self.dead.add(out, record, "unknown-model-version", "no such version is registered")
                continue
            if is_outcome:
                self._quality(out, decoded)
            if not decoded["shadow"]:
                groups = outcomes if is_outcome else predictions
                groups.setdefault((decoded["model_name"], decoded["model_version"]), []).append((record, decoded))
        for key, group in outcomes.items():
            self._outcomes(out, key, group)
        for key, group in predictions.items():
            self._predictions(out, key, group)
        return out

    def _watch(self, model: str, version: int) -> VersionWatch:
        key = (model, version)
        watch = self.watches.get(key)
        if watch is None:
            described = self.lookup(model, version)
            s = self.settings
            watch = VersionWatch(
                ErrorMonitor(s.concept_detector, s.concept_params, s.min_samples, s.recent_samples),
                self._block_monitor(described.feature_names, s.covariate_detector, s.covariate_params),
            )
            self.watches[key] = watch
            mine = [k for k in self.watches if k[0] == model]
            for old in mine[:-VERSIONS_KEPT]:
                del self.watches[old]
        return watch

    def _block_monitor(self, columns: Sequence[str], detector: str, params: dict[str, int | float]) -> BlockMonitor:
        s = self.settings
        return BlockMonitor(columns, detector, params, s.min_samples, s.block_size, s.recent_samples)

    def _quality(self, out: DriftOutput, outcome: dict[str, Any]) -> None:
        key = (outcome["model_name"], outcome["model_version"], bool(outcome["shadow"]))
        if key not in self.quality:
            self.quality[key] = (SlidingMean(self.settings.quality_window), SlidingMean(self.settings.quality_window))
        accuracy, loss = self.quality[key]
        accuracy.add(1.0 if outcome["correct"] else 0.0)
        loss.add(outcome["log_loss"])
        out.quality[key] = (accuracy.mean, loss.mean)

    def _outcomes(
        self, out: DriftOutput, key: tuple[str, int], group: list[tuple[SourceRecord, dict[str, Any]]]
    ) -> None:
        model = key[0]
        watch = self._watch(*key)
        sources = [record for record, _ in group]
        seen_before = self.outcomes_seen.get(model, 0)
        self.outcomes_seen[model] = seen_before + len(group)
        s = self.settings
        found = [
            ("concept", s.concept_detector, d)
            for d in watch.errors.update([0 if o["correct"] else 1 for _, o in group])
        ]
        values = np.array([o["values"] for _, o in group], dtype=np.float32)
        found += [("covariate", s.covariate_detector, d) for d in watch.features.update(values)]
        for kind, detector, detection in sorted(found, key=lambda f: f[2].index):
            at = sources[detection.index]
            evidence = watch.outcomes.evidence(kind, detector, detection, sources)
            event_id = self._drift_event(out, key, evidence, detection, at)
            requested = self.requested_at.get(model)
            position = seen_before + detection.index
            if requested is None or position - requested >= s.cooldown_samples:
                self.requested_at[model] = position
                request = {
                    "event_id": event_id,
                    "event_time": at.timestamp_ms,
                    "model_name": model,
                    "reason": _reason(kind, key[1], detection),
                    "requested_by": "drift",
                    "evidence": evidence,
                }
                out.send(Topic.RETRAIN_REQUESTS, model.encode(), self.request_codec.encode(request))
        watch.outcomes.saw(sources)

    def _predictions(
        self, out: DriftOutput, key: tuple[str, int], group: list[tuple[SourceRecord, dict[str, Any]]]
    ) -> None:
        watch = self._watch(*key)
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
            "event_time": at.timestamp_ms,
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
