"""The drift core: outcomes and predictions in, drift events, retrain requests and online quality out.

No Kafka here. Outcomes are keyed by model name, so all the outcomes of a model land in one
outcomes partition: concept drift (:class:`~loopline.drift.monitor.ErrorMonitor` on the serving version's errors) and
covariate drift (:class:`~loopline.drift.monitor.BlockMonitor` on its feature values) mean the same with one worker or
several. Prediction drift reads the predictions topic, keyed by event_id: each predictions
partition is a uniform sample of the stream, so each has monitors of its own, which say the same
as monitors on the whole stream would, a little later. It works before any label arrives and is
recorded as a drift event, but it never requests a retrain on its own: a retrain needs labeled
outcomes of the new world, which concept and covariate drift wait for.

Every detection becomes a drift event. A concept or covariate detection may also become a retrain
request, and a requested drift is followed up while the model recovers
(:mod:`loopline.drift.requests`).

State
-----
Everything is kept per input partition number (:mod:`loopline.drift.partition`, where the keys are
described). :meth:`DriftCore.changes` hands out, after each batch, the keys of each partition's
state that changed, for a store to save with the batch; :meth:`DriftCore.restore` rebuilds a
partition from all its keys, and the core then goes on exactly as the one that saved them would
have (up to the monitors' history caps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loopline.codec import Codec, CodecError
from loopline.codec.checks import clamp_time
from loopline.codec.outcomes import OutcomeReader
from loopline.codec.typed import numeric_columns
from loopline.deadletters import DeadLetters
from loopline.drift.monitor import Detection
from loopline.drift.partition import PartitionState, VersionWatch, error_monitor, feature_monitor, score_monitor
from loopline.drift.requests import RetrainRequests
from loopline.drift.state import Changes
from loopline.models import ModelVersion
from loopline.quality import SlidingMean
from loopline.records import KeyValue, Produced, SourceRecord, Topic
from loopline.settings import DriftSettings

__all__ = ["DriftCore", "DriftOutput"]


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
        self.requests = RetrainRequests(settings)
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
        return {number: part.save() for number, part in self.partitions.items() if part.dirty or part.stale}

    def restore(self, partition: int, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Rebuild the state of ``partition`` from every key :meth:`changes` left for it, in any order.

        Raises:
            ValueError: a key in a format this code does not know.
        """
        part = self.partitions[partition] = PartitionState()
        part.load(items, self.settings)

    def revoke(self, partitions: Iterable[int]) -> None:
        """Forget the state of ``partitions`` (another worker reads them now), unsaved changes included."""
        for partition in partitions:
            self.partitions.pop(partition, None)

    def _watch(self, part: PartitionState, model: str, version: int) -> VersionWatch:
        if (model, version) not in part.watches:
            self.lookup(model, version)  # a KeyError for an unknown version
        return part.watch(model, version)

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
            watch.errors = error_monitor(s)
        version = self.lookup(*key)
        columns = numeric_columns(version.feature_types, len(version.feature_names))
        if watch.features is None:
            watch.features = feature_monitor(s, [version.feature_names[c] for c in columns])
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
            position = seen_before + detection.index
            self.requests.drift(out, part, key, detection, evidence, event_id, at, position, reference)
        watch.outcomes.saw(sources)
        self.requests.follow_up(out, part, key, sources[-1])

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
            watch.scores = score_monitor(self.settings, self.lookup(*key).classes)
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
