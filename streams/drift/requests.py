"""When the drift core asks for a model's retraining, and the retrain requests it sends (no Kafka).

A concept or covariate drift becomes a retrain request unless the model had one within the last
``cooldown_samples`` of its outcomes, so that one drift makes one request. A requested drift opens
the model's recovery (:mod:`loopline.drift.recovery`): the core asks again, for a training on all
the data since the detection, while the serving version's error stays above the model's error
before the drift. Prediction drift never asks: a retrain needs labeled outcomes of the new world.
"""

from __future__ import annotations

from typing import Any

from loopline.codec import Codec
from loopline.codec.checks import clamp_time
from loopline.drift.monitor import Detection
from loopline.drift.partition import PartitionState
from loopline.drift.recovery import check, opened
from loopline.records import Produced, SourceRecord, Topic
from loopline.settings import DriftSettings

__all__ = ["RetrainRequests"]


class RetrainRequests:
    """The retrain requests of the drift core, under the cooldown and follow-up spacing of ``settings``.

    The position of an outcome is its number among the model's outcomes in one partition
    (``PartitionState.outcomes_seen`` counts them); the cooldown and the recovery count in it.
    """

    def __init__(self, settings: DriftSettings) -> None:
        self.settings = settings
        self.codec = Codec.load("retrain_request")

    def drift(
        self,
        out: Produced,
        part: PartitionState,
        key: tuple[str, int],
        detection: Detection,
        evidence: dict[str, Any],
        event_id: str,
        at: SourceRecord,
        position: int,
        reference: float | None,
    ) -> None:
        """Ask for a retrain of ``key``'s model after its drift event ``event_id`` (concept or covariate:
        ``evidence``'s kind), detected at record ``at``, the model's ``position``-th outcome, unless
        within the cooldown; a request opens the model's recovery.

        ``reference`` is the version's reference error rate before the batch's detections restarted
        its monitor: the level to recover to from a covariate drift (a concept detection carries its own).
        """
        (model, version), kind, s = key, evidence["kind"], self.settings
        requested = part.requested_at.get(model)
        if requested is not None and position - requested < s.cooldown_samples:
            return
        part.requested_at[model] = position
        since = [{"topic": at.topic, "partition": at.partition, "offset": at.offset + 1}]
        baseline = detection.statistics["error_reference"] if kind == "concept" else reference
        part.recovery[model] = opened(position, since, baseline, part.recovery.get(model), s.follow_up_samples)
        self._send(out, model, event_id, at, _reason(kind, version, detection), evidence, since)

    def follow_up(self, out: Produced, part: PartitionState, key: tuple[str, int], at: SourceRecord) -> None:
        """Ask again for ``key``'s model when its recovery says so (:func:`loopline.drift.recovery.check`),
        after a batch of its outcomes whose last is ``at``."""
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
        self._send(out, model, event_id, at, reason, None, recovery.since)

    def _send(
        self,
        out: Produced,
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
        out.send(Topic.RETRAIN_REQUESTS, model.encode(), self.codec.encode(request))


def _reason(kind: str, version: int, detection: Detection) -> str:
    stats = detection.statistics
    if kind == "concept":
        return (f"concept drift on version {version}: error rate {stats['error_reference']:.3f} → "
                f"{stats['error_recent']:.3f}")  # fmt: skip
    return (f"covariate drift on {detection.column}: mean {stats['mean_reference']:.3f} → {stats['mean_recent']:.3f} "
            f"({stats['shift_in_std']:+.2f} std)")  # fmt: skip
