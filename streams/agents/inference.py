"""``loopline worker inference``: features in, predictions out, the model hot-swapped in between batches.

Every worker follows the model-versions topic itself (no consumer group), so each one swaps to a
new serving version, and each one keeps serving the old version when the new one fails a check.
"""

from __future__ import annotations

import logging
import threading
from functools import partial

import faust
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from models import ModelVersion, Registry
from streams.agents.app import make_app
from streams.codec import Codec, CodecError
from streams.deadletters import DeadLetters
from streams.inference.core import BatchOutput, InferenceCore
from streams.inference.loader import LoadedModel, ModelRejected, load_model
from streams.kafka.clients import consume, make_sender, send_all
from streams.kafka.config import confluent_config
from streams.kafka.loop import kafka_loop
from streams.kafka.noise import client_callbacks
from streams.kafka.source import to_source
from streams.metrics import (
    INFERENCE_SECONDS,
    LATENCY_SECONDS,
    MODEL_REJECTIONS,
    MODEL_SWAPS,
    PREDICTIONS_OUT,
    SERVING_VERSION,
    observe_all,
)
from streams.records import Produced, SourceRecord, Topic
from streams.settings import InferenceSettings, KafkaSettings

__all__ = ["build_inference_app"]

log = logging.getLogger("loopline.inference")


class VersionFollower:
    """Reads model-versions from the start, and loads and stages every new serving or shadow version."""

    def __init__(self, core: InferenceCore, kafka: KafkaSettings, settings: InferenceSettings) -> None:
        self.core, self.kafka, self.settings = core, kafka, settings
        self.registry = Registry()
        self.codec = Codec.load("model_version")
        self.dead = DeadLetters("inference")
        self.sender = make_sender(kafka)
        self.tried: dict[str, str] = {}  # role → event_id of the version record last tried
        self.sources: dict[str, SourceRecord] = {}  # event_id → the record it came in

    def run(self, stop: threading.Event) -> None:
        """Follow the topic until ``stop`` is set; errors are logged and the reading starts over."""
        while not stop.is_set():
            try:
                self._read(stop)
            except Exception:
                log.exception("following model-versions failed; starting over in 2s")
                stop.wait(2)

    def _read(self, stop: threading.Event) -> None:
        # No group: this worker reads every partition, from the start of the topic.
        topic = self.kafka.topic(Topic.MODEL_VERSIONS)
        consumer = Consumer(confluent_config(self.kafka, {
            "group.id": "loopline-unused", "enable.auto.commit": False, "isolation.level": "read_committed",
            "fetch.message.max.bytes": self.kafka.max_message_bytes, **client_callbacks(),
        }))  # fmt: skip
        try:
            partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            self.registry = Registry()
            while not stop.is_set():
                for message in consume(consumer):
                    self._apply(to_source(message))
                self._follow()
        finally:
            consumer.close()

    def _apply(self, source: SourceRecord) -> None:
        try:
            version = ModelVersion.from_record(self.codec.decode(source.value))
        except CodecError as exc:
            log.error("model-versions offset %d is not a version record: %s", source.offset, exc)
            self._dead_letter(source, exc.reason, str(exc))
            return
        self.sources[version.event_id] = source
        self.registry.apply(version)

    def _dead_letter(self, source: SourceRecord, reason: str, error: str) -> None:
        send_all(self.kafka, self.kafka.topic(Topic.DEAD_LETTERS), [self.dead.encode(source, reason, error)],
                 self.sender)  # fmt: skip

    def _follow(self) -> None:
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
            self._load(role, wanted)

    def _load(self, role: str, version: ModelVersion) -> None:
        serving = self.core.serving
        expected = serving.version.feature_names if serving is not None else None
        try:
            loaded: LoadedModel = load_model(
                version, self.settings, shadow=role == "shadow", expected_features=expected
            )
        except ModelRejected as exc:
            MODEL_REJECTIONS.labels(version.model_name, exc.reason).inc()
            log.error("rejected version %d of %s as %s, keeping the current one: %s", version.version,
                      version.model_name, role, exc)  # fmt: skip
            self._dead_letter(
                self.sources[version.event_id], "model-rejected", f"{role} version {version.version}: {exc}"
            )
            return
        self.core.stage(role, loaded)
        MODEL_SWAPS.labels(version.model_name, role).inc()
        SERVING_VERSION.labels(version.model_name, role).set(version.version)
        log.info("version %d of %s loaded on %s/%s, swapping in as %s at the next batch", version.version,
                 version.model_name, loaded.backend.info.backend, loaded.backend.info.device, role)  # fmt: skip


def _record_metrics(model: str, produced: Produced) -> None:
    assert isinstance(produced, BatchOutput)
    out = produced
    if out.predictions:
        PREDICTIONS_OUT.labels(model, str(out.version), "false").inc(len(out.predictions))
        INFERENCE_SECONDS.labels(model, "false").observe(out.inference_s)
        observe_all(LATENCY_SECONDS.labels(model), out.latencies_s)
    if out.shadow_predictions:
        PREDICTIONS_OUT.labels(model, str(out.shadow_version), "true").inc(len(out.shadow_predictions))
        INFERENCE_SECONDS.labels(model, "true").observe(out.shadow_inference_s)


def build_inference_app(kafka: KafkaSettings, settings: InferenceSettings) -> faust.App:
    """The Faust app of an inference worker: the version follower and the batch loop.

    No batch is read until a version serves.
    """
    core = InferenceCore()
    follower = VersionFollower(core, kafka, settings)
    loop = kafka_loop(
        kafka, "inference", [Topic.FEATURES], core.process, settings.max_batch_size, settings.max_wait_ms / 1000,
        ready=lambda: core.ready, observe=partial(_record_metrics, settings.model_name),
    )  # fmt: skip
    return make_app("inference", kafka, follower.run, loop.run)
