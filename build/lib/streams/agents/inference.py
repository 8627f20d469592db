"""``loopline worker inference``: features in, predictions out, the model hot-swapped in between batches.

Every worker follows the model-versions topic itself (no consumer group), so each one swaps to a
new serving version, and each one keeps serving the old version when the new one fails a check.
"""

from __future__ import annotations

import asyncio
import logging

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from models import ModelVersion, Registry
from streams.agents.app import make_app
from streams.agents.batches import BatchConsumer, Outgoing, deliver, make_producer, to_source
from streams.codec import Codec, CodecError
from streams.deadletters import DeadLetters, SourceRecord
from streams.inference.core import BatchOutput, InferenceCore
from streams.inference.loader import LoadedModel, ModelRejected, load_model
from streams.kafka.config import aiokafka_config
from streams.metrics import (
    BATCH_SIZE,
    DEAD_LETTERS,
    EVENTS_IN,
    INFERENCE_SECONDS,
    LATENCY_SECONDS,
    MODEL_REJECTIONS,
    MODEL_SWAPS,
    PREDICTIONS_OUT,
    SERVING_VERSION,
)
from streams.settings import InferenceSettings, KafkaSettings

__all__ = ["build_inference_app"]

log = logging.getLogger("loopline.inference")


class VersionFollower:
    """Reads model-versions from the start, and loads and stages every new serving or shadow version."""

    def __init__(
        self, producer: AIOKafkaProducer, core: InferenceCore, kafka: KafkaSettings, settings: InferenceSettings
    ) -> None:
        self.producer, self.core, self.kafka, self.settings = producer, core, kafka, settings
        self.registry = Registry()
        self.codec = Codec.load("model_version")
        self.dead = DeadLetters("inference")
        self.tried: dict[str, str] = {}  # role → event_id of the version record last tried
        self.sources: dict[str, SourceRecord] = {}  # event_id → the record it came in

    async def run(self) -> None:
        """Follow the topic for as long as the worker runs; errors are logged and the reading restarts."""
        while True:
            try:
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("following model-versions failed; starting over in 2s")
                await asyncio.sleep(2)

    async def _read(self) -> None:
        # No group: this worker gets every partition, from the start of the topic.
        consumer = AIOKafkaConsumer(
            self.kafka.topic("model-versions"),
            **aiokafka_config(self.kafka),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            self.registry = Registry()
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for messages in batches.values():
                    for message in messages:
                        await self._apply(message)
                await self._follow()
        finally:
            await consumer.stop()

    async def _apply(self, message: ConsumerRecord[bytes, bytes]) -> None:
        source = to_source(message)
        try:
            version = ModelVersion.from_record(self.codec.decode(source.value))
        except CodecError as exc:
            log.error("model-versions offset %d is not a version record: %s", source.offset, exc)
            await self._dead_letter(source, exc.reason, str(exc))
            return
        self.sources[version.event_id] = source
        self.registry.apply(version)

    async def _dead_letter(self, source: SourceRecord, reason: str, error: str) -> None:
        await deliver(self.producer, [(self.kafka.topic("dead-letters"), *self.dead.encode(source, reason, error))])

    async def _follow(self) -> None:
        name = self.settings.model_name
        for role, wanted in (
            ("serving", self.registry.serving(name)),
            ("shadow", self.registry.shadow(name)),
        ):
            current = getattr(self.core, role)
            if wanted is None:
                if role == "shadow" and current is not None:
                    self.core.stage("shadow", None)
                    log.info("shadow version %d of %s removed", current.version.version, name)
                continue  # no serving version: keep serving what is loaded
            if self.tried.get(role) == wanted.event_id:
                continue
            self.tried[role] = wanted.event_id
            if current is not None and current.version.event_id == wanted.event_id:
                continue
            await self._load(role, wanted)

    async def _load(self, role: str, version: ModelVersion) -> None:
        serving = self.core.serving
        expected = serving.version.feature_names if serving is not None else None
        loop = asyncio.get_running_loop()
        try:
            loaded: LoadedModel = await loop.run_in_executor(
                None,
                lambda: load_model(version, self.settings, shadow=role == "shadow", expected_features=expected),
            )
        except ModelRejected as exc:
            MODEL_REJECTIONS.labels(version.model_name, exc.reason).inc()
            log.error("rejected version %d of %s as %s, keeping the current one: %s", version.version,
                      version.model_name, role, exc)  # fmt: skip
            await self._dead_letter(
                self.sources[version.event_id], "model-rejected", f"{role} version {version.version}: {exc}"
            )
            return
        self.core.stage(role, loaded)
        MODEL_SWAPS.labels(version.model_name, role).inc()
        SERVING_VERSION.labels(version.model_name, role).set(version.version)
        log.info("version %d of %s loaded on %s/%s, swapping in as %s at the next batch", version.version,
                 version.model_name, loaded.backend.info.backend, loaded.backend.info.device, role)  # fmt: skip


def _outgoing(kafka: KafkaSettings, out: BatchOutput) -> list[Outgoing]:
    predictions, shadow, dead = (kafka.topic(t) for t in ("predictions", "shadow-predictions", "dead-letters"))
    outgoing: list[Outgoing] = [(predictions, key, value) for key, value in out.predictions]
    outgoing += [(shadow, key, value) for key, value in out.shadow_predictions]
    outgoing += [(dead, key, value) for key, value in out.dead_letters]
    return outgoing


def _record_metrics(model: str, size: int, out: BatchOutput) -> None:
    EVENTS_IN.labels("inference").inc(size)
    BATCH_SIZE.labels("inference").observe(size)
    for reason in out.dead_reasons:
        DEAD_LETTERS.labels("inference", reason).inc()
    if out.predictions:
        PREDICTIONS_OUT.labels(model, str(out.version), "false").inc(len(out.predictions))
        INFERENCE_SECONDS.labels(model, "false").observe(out.inference_s)
        for latency in out.latencies_s.tolist():
            LATENCY_SECONDS.labels(model).observe(latency)
    if out.shadow_predictions:
        PREDICTIONS_OUT.labels(model, str(out.shadow_version), "true").inc(len(out.shadow_predictions))
        INFERENCE_SECONDS.labels(model, "true").observe(out.shadow_inference_s)


def build_inference_app(kafka: KafkaSettings, settings: InferenceSettings) -> faust.App:
    """The Faust app of an inference worker: the version follower and the batch loop."""
    app = make_app("inference", kafka)

    @app.task
    async def serve() -> None:
        producer = make_producer(kafka)
        await producer.start()
        core = InferenceCore()
        follower = asyncio.create_task(VersionFollower(producer, core, kafka, settings).run())
        try:
            consumer = BatchConsumer(
                kafka, kafka.topic("features"), f"{kafka.topic_prefix}inference",
                settings.max_batch_size, settings.max_wait_ms / 1000,
            )  # fmt: skip
            async with consumer:
                await serve_batches(consumer, producer, core, kafka, settings)
        finally:
            follower.cancel()
            await producer.stop()

    return app


async def serve_batches(
    consumer: BatchConsumer,
    producer: AIOKafkaProducer,
    core: InferenceCore,
    kafka: KafkaSettings,
    settings: InferenceSettings,
) -> None:
    """The agent loop: a batch in, the core's outputs sent and acknowledged, then the commit."""
    async for records in consumer.batches():
        while not core.ready:
            await asyncio.sleep(0.05)  # hold the batch until a version serves
        try:
            out = core.process(records)
        except Exception as exc:  # a bug must not lose the batch: dead-letter it with the cause
            log.exception("batch of %d failed", len(records))
            out = BatchOutput(
                dead_letters=[core.dead.encode(r, "internal-error", repr(exc)) for r in records],
                dead_reasons=["internal-error"] * len(records),
            )
        await deliver(producer, _outgoing(kafka, out))
        await consumer.commit(records)
        _record_metrics(settings.model_name, len(records), out)
