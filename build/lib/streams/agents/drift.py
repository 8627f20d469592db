"""``loopline worker drift``: outcomes and predictions in, drift events and retrain requests out.

Outcomes are keyed by model name, so one worker of the group watches the whole outcome stream of
a model. Detector state lives in memory: a restart, or a rebalance that moves a model's outcome
partition, starts that model's monitors afresh (a new warm-up) on the worker that reads it next.
"""

from __future__ import annotations

import logging
from collections import Counter

import faust

from streams.agents.app import make_app
from streams.agents.batches import BatchConsumer, Outgoing, deliver, make_producer
from streams.drift.core import DriftCore, DriftOutput
from streams.kafka.versions import VersionLookup
from streams.metrics import (
    BATCH_SIZE,
    DEAD_LETTERS,
    DRIFT_EVENTS,
    EVENTS_IN,
    ONLINE_ACCURACY,
    ONLINE_LOG_LOSS,
    RETRAIN_REQUESTS,
)
from streams.settings import DriftSettings, KafkaSettings

__all__ = ["build_drift_app"]

log = logging.getLogger("loopline.drift")


def build_drift_app(kafka: KafkaSettings, settings: DriftSettings) -> faust.App:
    """The Faust app of a drift worker."""
    app = make_app("drift", kafka)

    @app.task
    async def watch() -> None:
        core = DriftCore(settings, kafka.topic("outcomes"), VersionLookup(kafka))
        producer = make_producer(kafka)
        await producer.start()
        try:
            topics = [kafka.topic("outcomes"), kafka.topic("predictions")]
            consumer = BatchConsumer(
                kafka, topics, f"{kafka.topic_prefix}drift", settings.max_batch_size, settings.max_wait_ms / 1000
            )
            async with consumer:
                async for records in consumer.batches():
                    out = core.process(records)
                    await deliver(producer, _outgoing(kafka, out))
                    await consumer.commit(records)
                    _record_metrics(len(records), out)
        finally:
            await producer.stop()

    return app


def _outgoing(kafka: KafkaSettings, out: DriftOutput) -> list[Outgoing]:
    events, requests, dead = (kafka.topic(t) for t in ("drift-events", "retrain-requests", "dead-letters"))
    outgoing: list[Outgoing] = [(events, key, value) for key, value in out.drift_events]
    outgoing += [(requests, key, value) for key, value in out.retrain_requests]
    outgoing += [(dead, key, value) for key, value in out.dead_letters]
    return outgoing


def _record_metrics(size: int, out: DriftOutput) -> None:
    EVENTS_IN.labels("drift").inc(size)
    BATCH_SIZE.labels("drift").observe(size)
    for reason, count in Counter(out.dead_reasons).items():
        DEAD_LETTERS.labels("drift", reason).inc(count)
    for (model, version, shadow), (accuracy, loss) in out.quality.items():
        ONLINE_ACCURACY.labels(model, str(version), str(shadow).lower()).set(accuracy)
        ONLINE_LOG_LOSS.labels(model, str(version), str(shadow).lower()).set(loss)
    for (key, _), kind in zip(out.drift_events, out.kinds, strict=True):
        DRIFT_EVENTS.labels(key.decode(), kind).inc()
    for key, _ in out.retrain_requests:
        RETRAIN_REQUESTS.labels(key.decode(), "drift").inc()
