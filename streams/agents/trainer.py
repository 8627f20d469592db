"""``loopline worker trainer``: retrain requests in, gated model versions out, and the rollback guard.

Requests are taken in batches; the requests of one model in a batch make one training, and a
request written before that model's last training ended was answered by it (coalesced). After a
drift the window starts after the detection (the data of the new world), and the training waits,
up to ``wait_minutes``, until ``min_events`` such outcomes have come. A request
that can't be served (unknown model, too few outcomes) becomes a dead letter with the reason. The
guard reads the outcomes in a group of its own and puts a predecessor back when a newly serving
version does worse.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
from aiokafka import AIOKafkaProducer

from models import ArtifactStore, ModelVersion
from streams.agents.app import make_app
from streams.agents.batches import BatchConsumer, deliver, make_producer
from streams.codec import Codec, CodecError
from streams.deadletters import DeadLetters, SourceRecord
from streams.kafka.versions import VersionLookup, load_registry, publish_versions
from streams.metrics import DEAD_LETTERS, EVENTS_IN, RETRAINS, ROLLBACKS
from streams.settings import KafkaSettings, RegistrySettings, TrainerSettings
from streams.trainer.core import Refused, Trainer
from streams.trainer.guard import RollbackGuard
from streams.trainer.window import Window, read_window

__all__ = ["build_trainer_app"]

log = logging.getLogger("loopline.trainer")


class Requests:
    """The request side of the worker: coalesce, train, publish, answer."""

    def __init__(self, kafka: KafkaSettings, settings: TrainerSettings, producer: AIOKafkaProducer) -> None:
        registry = RegistrySettings()
        self.kafka, self.settings, self.producer = kafka, settings, producer
        self.trainer = Trainer(settings, ArtifactStore(registry.artifact_dir, registry.inline_limit_bytes))
        self.codec = Codec.load("retrain_request")
        self.dead = DeadLetters("trainer")
        self.trained_at: dict[str, int] = {}  # model → epoch ms when its last training ended

    async def handle(self, records: list[SourceRecord]) -> None:
        by_model: dict[str, list[tuple[SourceRecord, dict[str, Any]]]] = {}
        for record in records:
            try:
                request = self.codec.decode(record.value)
            except CodecError as exc:
                await self._refuse([record], exc.reason, str(exc))
                continue
            if record.timestamp_ms < self.trained_at.get(request["model_name"], 0):
                RETRAINS.labels(request["model_name"], "coalesced").inc()
                log.info(
                    "request %s coalesced into the last training of %s", request["event_id"], request["model_name"]
                )
                continue
            by_model.setdefault(request["model_name"], []).append((record, request))
        for model, requests in by_model.items():
            await self._retrain(model, requests)

    async def _retrain(self, model: str, requests: list[tuple[SourceRecord, dict[str, Any]]]) -> None:
        why = "; ".join(f"{r['requested_by']}: {r['reason']}" for _, r in requests)
        since = self._after_drift(requests)
        loop = asyncio.get_running_loop()
        try:
            window = await self._read_window(model, since)
            records = await loop.run_in_executor(None, self._train, model, why, window)
        except Refused as exc:
            RETRAINS.labels(model, "refused").inc()
            log.warning("retrain of %s refused: %s", model, exc)
            await self._refuse([record for record, _ in requests], exc.reason, str(exc))
            return
        except Exception as exc:  # a failed training must not stop the worker: answer with the cause
            RETRAINS.labels(model, "failed").inc()
            log.exception("retrain of %s failed", model)
            await self._refuse([record for record, _ in requests], "internal-error", repr(exc))
            return
        self.trained_at[model] = int(time.time() * 1000)
        RETRAINS.labels(model, "promoted" if records[-1].status == "serving" else "rejected").inc()

    def _after_drift(self, requests: list[tuple[SourceRecord, dict[str, Any]]]) -> dict[int, int]:
        """Outcome offsets after the latest detection among drift requests: data of the new world."""
        topic = self.kafka.topic("outcomes")
        since: dict[int, int] = {}
        for _, request in requests:
            for span in (request["evidence"] or {}).get("offsets", []):
                if span["topic"] == topic:
                    since[span["partition"]] = max(since.get(span["partition"], 0), span["end"] + 1)
        return since

    async def _read_window(self, model: str, since: dict[int, int]) -> Window:
        """The training window; after a drift, once ``min_events`` outcomes came after the detection
        (or ``wait_minutes`` passed)."""
        s = self.settings
        loop = asyncio.get_running_loop()
        max_age_s = s.window_minutes * 60 if s.window_minutes else None
        deadline = time.monotonic() + s.wait_minutes * 60
        while True:
            window = await loop.run_in_executor(None, read_window, self.kafka, model, s.window_events, max_age_s, since)
            if not since or len(window.labels) >= s.min_events or time.monotonic() >= deadline:
                return window
            log.info("%s: %d outcomes since the drift, waiting for %d", model, len(window.labels), s.min_events)
            await asyncio.sleep(2)

    def _train(self, model: str, why: str, window: Window) -> list[ModelVersion]:
        """Train, gate and publish (blocking: runs in an executor thread)."""
        decision = self.trainer.retrain(load_registry(self.kafka), model, window, why)
        publish_versions(self.kafka, decision.records)
        return decision.records

    async def _refuse(self, records: list[SourceRecord], reason: str, error: str) -> None:
        topic = self.kafka.topic("dead-letters")
        await deliver(self.producer, [(topic, *self.dead.encode(record, reason, error)) for record in records])
        DEAD_LETTERS.labels("trainer", reason).inc(len(records))


def build_trainer_app(kafka: KafkaSettings, settings: TrainerSettings) -> faust.App:
    """The Faust app of a trainer worker: the request loop and the rollback guard."""
    app = make_app("trainer", kafka)

    @app.task
    async def train() -> None:
        producer = make_producer(kafka)
        await producer.start()
        try:
            requests = Requests(kafka, settings, producer)
            consumer = BatchConsumer(kafka, kafka.topic("retrain-requests"), f"{kafka.topic_prefix}trainer", 100, 0.5)
            async with consumer:
                async for records in consumer.batches():
                    await requests.handle(records)
                    await consumer.commit(records)
                    EVENTS_IN.labels("trainer").inc(len(records))
        finally:
            await producer.stop()

    @app.task
    async def guard() -> None:
        lookup = VersionLookup(kafka)
        watch = RollbackGuard(settings.guard_outcomes, settings.guard_margin, lookup)
        codec = Codec.load("outcome")
        consumer = BatchConsumer(kafka, kafka.topic("outcomes"), f"{kafka.topic_prefix}trainer-guard", 4096, 0.1)
        loop = asyncio.get_running_loop()
        async with consumer:
            async for records in consumer.batches():
                for record in records:
                    try:
                        verdict = watch.add(codec.decode(record.value))
                    except (CodecError, KeyError):
                        continue  # the drift agent dead-letters these; the guard only skips them
                    if verdict is None:
                        continue
                    try:
                        await loop.run_in_executor(None, _roll_back, kafka, verdict.model_name, verdict.version,
                                                   verdict.predecessor, verdict.reason)  # fmt: skip
                    except Exception:  # the guard must keep watching: say so loudly and go on
                        log.exception("rolling %s back from version %d failed", verdict.model_name, verdict.version)
                await consumer.commit(records)

    return app


def _roll_back(kafka: KafkaSettings, model: str, version: int, predecessor: int, reason: str) -> None:
    """Put ``predecessor`` back if ``version`` still serves (a person may have acted meanwhile)."""
    registry = load_registry(kafka)
    serving = registry.serving(model)
    if serving is None or serving.version != version:
        log.info("version %d of %s no longer serves; no rollback", version, model)
        return
    publish_versions(kafka, registry.rollback(model, f"automatic: {reason}", to=predecessor))
    ROLLBACKS.labels(model).inc()
    log.warning("rolled %s back from version %d to %d: %s", model, version, predecessor, reason)
