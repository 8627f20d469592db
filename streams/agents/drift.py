"""``loopline worker drift``: outcomes and predictions in, drift events and retrain requests out.

Outcomes are keyed by model name, so one worker of the group watches the whole outcome stream of
a model. Detector state lives in memory: a restart, or a rebalance that moves a model's outcome
partition, starts that model's monitors afresh (a new warm-up) on the worker that reads it next.
"""

from __future__ import annotations

import faust

from streams.agents.app import make_app
from streams.drift.core import DriftCore, DriftOutput
from streams.kafka.loop import kafka_loop
from streams.kafka.versions import VersionLookup
from streams.metrics import DRIFT_EVENTS, ONLINE_ACCURACY, ONLINE_LOG_LOSS, RETRAIN_REQUESTS
from streams.records import Produced, Topic
from streams.settings import DriftSettings, KafkaSettings

__all__ = ["build_drift_app"]


def build_drift_app(kafka: KafkaSettings, settings: DriftSettings) -> faust.App:
    """The Faust app of a drift worker."""
    core = DriftCore(settings, kafka.topic(Topic.OUTCOMES), VersionLookup(kafka))
    loop = kafka_loop(
        kafka, "drift", [Topic.OUTCOMES, Topic.PREDICTIONS], core.process, settings.max_batch_size,
        settings.max_wait_ms / 1000, observe=_record_metrics,
    )  # fmt: skip
    return make_app("drift", kafka, loop.run)


def _record_metrics(produced: Produced) -> None:
    assert isinstance(produced, DriftOutput)
    out = produced
    for (model, version, shadow), (accuracy, loss) in out.quality.items():
        ONLINE_ACCURACY.labels(model, str(version), str(shadow).lower()).set(accuracy)
        ONLINE_LOG_LOSS.labels(model, str(version), str(shadow).lower()).set(loss)
    for (key, _), kind in zip(out.drift_events, out.kinds, strict=True):
        DRIFT_EVENTS.labels(key.decode(), kind).inc()
    for key, _ in out.retrain_requests:
        RETRAIN_REQUESTS.labels(key.decode(), "drift").inc()
