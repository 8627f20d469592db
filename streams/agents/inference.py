"""``loopline worker inference``: features in, predictions out, the model hot-swapped in between batches.

A canary version, with the share of the entities it serves, is followed like the serving one: a
ramp's new share is swapped in between batches.

Every worker follows the model-versions topic with a registry follower of its own
(:class:`loopline.models.registry.RegistryFollower`, no consumer group), so each one swaps to a new
serving version, and each one keeps serving the old version when the new one fails a check.
A worker that has nothing loaded yet (it just started) and whose serving version fails falls back
to the next of the registry's serving candidates that passes (another version that says serving,
else the newest retired one); with nothing to serve once it has read the topic to its
end it says so, again every ``NOTHING_TO_SERVE_EVERY_S``, and reports the backlog it is not reading
as its consumer lag.

The follower's thread stages versions in the core (:class:`VersionStager`, told of each snapshot);
the batch loop's thread swaps them in, before a batch and while it waits for one, and sets the
version gauges as it does, so that they say what serves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Protocol

import faust
from confluent_kafka import Consumer, KafkaException, TopicPartition

from loopline.agents.app import make_app
from loopline.deadletters import DeadLetters
from loopline.inference.core import BatchOutput, InferenceCore, where
from loopline.inference.loader import LoadedModel, ModelRejected
from loopline.kafka.clients import make_sender, send_all
from loopline.kafka.config import confluent_config
from loopline.kafka.loop import kafka_loop
from loopline.kafka.noise import client_callbacks
from loopline.metrics import (
    BACKEND_SWITCHES,
    CANARY_TRAFFIC,
    CONSUMER_LAG,
    INFERENCE_SECONDS,
    LATENCY_SECONDS,
    MODEL_FALLBACKS,
    MODEL_REJECTIONS,
    MODEL_SWAPS,
    PREDICTIONS_OUT,
    RUNTIME_FALLBACK_ROWS,
    SERVING_VERSION,
    SHADOW_FAILURES,
    observe_all,
)
from loopline.models import ArtifactStore, ModelVersion, Registry
from loopline.models.registry import RegistryFollower, RegistryView, Snapshot
from loopline.models.registry.admission import admit, serving_or_fallback
from loopline.records import KeyValue, Produced, SourceRecord, Topic
from loopline.settings import InferenceSettings, KafkaSettings, RegistrySettings

__all__ = ["VersionStager", "build_inference_app"]

log = logging.getLogger("loopline.inference")

NOTHING_TO_SERVE_EVERY_S = 30.0
"""How often a worker with nothing to serve says so again."""
LAG_EVERY_S = 1.0
"""How often a worker with nothing to serve reports the lag of the features it is not reading."""


class VersionStager:
    """Loads and stages in the core the versions the registry says serve, run as a canary or in shadow.

    It listens to the worker's :class:`RegistryFollower` (on its thread). Every version goes through
    :func:`loopline.models.registry.admission.admit`, the checks of the CLI and the trainer. A serving
    version is acted on as soon as it is read, but a fallback and the "nothing to serve" report wait
    until the topic was read to its end (:attr:`Snapshot.complete`), so that a worker reading its
    history does not act on half of it.
    """

    def __init__(
        self,
        core: InferenceCore,
        settings: InferenceSettings,
        store: ArtifactStore,
        emit: Callable[[KeyValue], None],
        lag: Lag,
    ) -> None:
        self.core, self.settings, self.store, self.emit, self.lag = core, settings, store, emit, lag
        self.registry: RegistryView = Registry()
        """The snapshot acted on last."""
        self.dead = DeadLetters("inference")
        self.staged: dict[str, ModelVersion | None] = {"serving": None, "canary": None, "shadow": None}
        self.tried: dict[str, str] = {}  # role → event_id of the version record last tried
        self.failed: set[str] = set()  # event_ids of version records that failed their checks
        self.walked = -1  # the revision whose serving candidates the last fallback walked
        self.sources: dict[str, SourceRecord] = {}  # version key → the record of its latest status
        self.idle_said = float("-inf")
        self.lag_reported = float("-inf")

    def folded(self, source: SourceRecord, version: ModelVersion) -> None:
        """Remember where ``version``'s record came from, for the dead letter should it fail its checks."""
        self.sources[version.key] = source

    def refused(self, source: SourceRecord, version: ModelVersion | None, reason: str, error: str) -> None:
        """Dead-letter a record the registry did not fold (a conflicting one is also counted as a rejection)."""
        if version is not None:
            MODEL_REJECTIONS.labels(version.model_name, reason).inc()
        self.emit(self.dead.encode(source, reason, error))

    def polled(self, snapshot: Snapshot) -> None:
        """Act on the registry as read so far."""
        self.registry = snapshot
        self.follow(caught_up=snapshot.complete)

    def follow(self, caught_up: bool) -> None:
        """Act on :attr:`registry`; ``caught_up`` once the topic was read to its end."""
        name = self.settings.model_name
        wanted = self.registry.serving(name)
        if wanted is not None and self.tried.get("serving") != wanted.event_id:
            self.tried["serving"] = wanted.event_id
            current = self.staged["serving"]
            if current is None or current.version != wanted.version:
                self._load("serving", wanted)
        if self.staged["serving"] is None and caught_up:
            if wanted is not None and wanted.event_id in self.failed and self.walked != self.registry.revision:
                self.walked = self.registry.revision
                self._fall_back(name, wanted)
            if self.staged["serving"] is None:
                self._nothing_to_serve(name)
        self._follow_beside(name, "canary", self.registry.canary(name))
        self._follow_beside(name, "shadow", self.registry.shadow(name))

    def _follow_beside(self, name: str, role: str, wanted: ModelVersion | None) -> None:
        """Stage ``wanted`` as the canary or shadow (a canary again when its traffic moved), or remove it."""
        current = self.staged[role]
        if wanted is None:
            if current is not None:
                self.core.stage(role, None)
                self.staged[role] = None
                log.info("%s version %d of %s removed", role, current.version, name)
            return
        if self.tried.get(role) == wanted.event_id:
            return
        self.tried[role] = wanted.event_id
        if current is None or current.version != wanted.version or current.traffic != wanted.traffic:
            self._load(role, wanted)

    def _fall_back(self, name: str, failed: ModelVersion) -> None:
        """Serve what :func:`serving_or_fallback` says serves (the next of the serving candidates that passes:
        another version that says serving, else the newest retired one), since the serving one fails and
        nothing is loaded."""
        loaded = serving_or_fallback(self.registry, name, self.settings, self.store,
                                     lambda version, exc: self._rejected("serving", version, exc))  # fmt: skip
        if loaded is None:
            return
        self._stage("serving", loaded)
        MODEL_FALLBACKS.labels(name).inc()
        log.warning("serving version %d of %s fails its checks; serving version %d instead, the next that passes",
                    failed.version, name, loaded.version.version)  # fmt: skip

    def _load(self, role: str, version: ModelVersion) -> None:
        """Check and stage ``version`` as ``role``; a failure is logged, counted and dead-lettered once."""
        try:
            loaded = admit(self.registry, version, self.settings, self.store, shadow=role == "shadow")
        except ModelRejected as exc:
            self._rejected(role, version, exc)
            return
        self._stage(role, loaded)

    def _rejected(self, role: str, version: ModelVersion, exc: ModelRejected) -> None:
        if version.event_id in self.failed:
            return
        self.failed.add(version.event_id)
        MODEL_REJECTIONS.labels(version.model_name, exc.reason).inc()
        log.error("rejected version %d of %s as %s: %s", version.version, version.model_name, role, exc)
        source = self.sources[version.key]
        self.emit(self.dead.encode(source, "model-rejected", f"{role} version {version.version}: {exc}"))

    def _stage(self, role: str, loaded: LoadedModel) -> None:
        version = loaded.version
        self.core.stage(role, loaded, self._fallbacks(version, loaded) if role == "serving" else ())
        self.staged[role] = version
        if role == "serving":
            self.lag.close()
        share = f" serving {version.traffic:.1%} of the entities" if role == "canary" else ""
        serving = self.staged["serving"]
        if role != "serving" and serving is not None and not version.takes_input_of(serving):
            log.warning("%s version %d of %s takes another input than serving version %d: it runs once they take "
                        "the same", role, version.version, version.model_name, serving.version)  # fmt: skip
        log.info("version %d of %s loaded on %s/%s, swapping in as %s%s at the next batch", version.version,
                 version.model_name, loaded.backend.info.backend, loaded.backend.info.device, role, share)  # fmt: skip

    def _fallbacks(self, version: ModelVersion, loaded: LoadedModel) -> list[LoadedModel]:
        """What serves the rows ``version`` fails on at run time: the same version on the CPU when it runs
        on a GPU, then the newest retired version before it that passes its checks, on the CPU."""
        cpu = self.settings.model_copy(update={"device": "cpu"})
        candidates = [version] if loaded.backend.info.device != "cpu" else []
        candidates += [v for v in self.registry.fallbacks(version.model_name, below=version.version)
                       if v.event_id not in self.failed]  # fmt: skip
        chain = []
        for candidate in candidates:
            try:
                chain.append(admit(self.registry, candidate, cpu, self.store))
            except ModelRejected as exc:
                log.warning("version %d of %s can't be a fallback: %s", candidate.version, version.model_name, exc)
                continue
            if candidate is not version:
                break
        return chain

    def _nothing_to_serve(self, name: str) -> None:
        """Say that nothing serves (at once, then every ``NOTHING_TO_SERVE_EVERY_S``) and report the lag."""
        SERVING_VERSION.labels(name, "serving").set(0)
        now = time.monotonic()
        if now - self.idle_said >= NOTHING_TO_SERVE_EVERY_S:
            self.idle_said = now
            log.warning("nothing to serve: %s; features are not read until a version of %r serves",
                        self._why_nothing(name), name)  # fmt: skip
        if now - self.lag_reported >= LAG_EVERY_S:
            self.lag_reported = now
            self.lag.report()

    def _why_nothing(self, name: str) -> str:
        versions = self.registry.versions(name)
        if not versions:
            others = ", ".join(repr(m) for m in self.registry.models()) or "none"
            return (f"model {name!r} has no versions (models in the registry: {others}; "
                    "is LOOPLINE_INFERENCE_MODEL_NAME right?)")  # fmt: skip
        listed = ", ".join(f"{v.version} {v.status}" for v in versions)
        if self.registry.serving(name) is None:
            return f"model {name!r} has no serving version (versions: {listed})"
        return f"no version of {name!r} that may serve passes its checks (versions: {listed})"


def report_swap(model: str, role: str, loaded: LoadedModel | None) -> None:
    """Count a version swapped in as ``role`` and set the gauges to what serves now (``loaded``; None:
    the role was removed). Called by the core as it swaps, on the batch loop's thread."""
    SERVING_VERSION.labels(model, role).set(0 if loaded is None else loaded.version.version)
    if role == "canary":
        CANARY_TRAFFIC.labels(model).set(0 if loaded is None else loaded.version.traffic)
    if loaded is not None:
        MODEL_SWAPS.labels(model, role).inc()


class Lag(Protocol):
    """Reports the features a worker with nothing to serve is not reading."""

    def report(self) -> None: ...

    def close(self) -> None: ...


class UnreadLag:
    """The inference group's unread features, per partition, into the consumer-lag gauge.

    The batch loop reports lag from its consumer as it reads; while nothing serves it reads
    nothing, so this reports it instead: the end of each partition less the group's committed
    offset (its start where none is), read without joining the group.
    """

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.group = f"{kafka.topic_prefix}inference"
        self.consumer: Consumer | None = None

    def report(self) -> None:
        """Set the gauge of every features partition (a broker that does not answer is logged, not raised)."""
        if self.consumer is None:
            self.consumer = Consumer(confluent_config(self.kafka, {
                "group.id": self.group, "enable.auto.commit": False, "isolation.level": "read_committed",
                **client_callbacks(),
            }))  # fmt: skip
        topic = self.kafka.topic(Topic.FEATURES)
        try:
            metadata = self.consumer.list_topics(topic, timeout=10).topics[topic]
            partitions = [TopicPartition(topic, p) for p in metadata.partitions]
            for tp in self.consumer.committed(partitions, timeout=10):
                low, high = self.consumer.get_watermark_offsets(tp, timeout=10, cached=False)
                start = tp.offset if tp.offset >= 0 else low
                CONSUMER_LAG.labels(self.group, topic, str(tp.partition)).set(max(0, high - start))
        except KafkaException as exc:  # the broker is away: the gauge keeps its last value until the next try
            log.warning("can't read the lag of %s on %s: %s", self.group, topic, exc)

    def close(self) -> None:
        """Close the consumer (a version serves, or the worker stops)."""
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None


def _record_metrics(model: str, produced: Produced) -> None:
    assert isinstance(produced, BatchOutput)
    out = produced
    for version, count in out.served_by.items():
        PREDICTIONS_OUT.labels(model, str(version), "false").inc(count)
    for (failed, served_by), count in out.fallback_rows.items():
        RUNTIME_FALLBACK_ROWS.labels(model, str(failed), served_by).inc(count)
    if out.switched_to is not None:
        BACKEND_SWITCHES.labels(model, str(out.version), where(out.switched_to)).inc()
        SERVING_VERSION.labels(model, "serving").set(out.switched_to.version.version)
    if out.canary_dropped:
        BACKEND_SWITCHES.labels(model, str(out.canary_version), "serving").inc()
        SERVING_VERSION.labels(model, "canary").set(0)
        CANARY_TRAFFIC.labels(model).set(0)
    if out.shadow_failed:
        SHADOW_FAILURES.labels(model).inc()
    if out.predictions:
        INFERENCE_SECONDS.labels(model, "false").observe(out.inference_s)
        observe_all(LATENCY_SECONDS.labels(model), out.latencies_s)
    if out.shadow_predictions:
        PREDICTIONS_OUT.labels(model, str(out.shadow_version), "true").inc(len(out.shadow_predictions))
        INFERENCE_SECONDS.labels(model, "true").observe(out.shadow_inference_s)


def build_inference_app(kafka: KafkaSettings, settings: InferenceSettings, registry: RegistrySettings) -> faust.App:
    """The Faust app of an inference worker: the registry follower (staging versions) and the batch loop.

    No batch is read until a version serves.
    """
    core = InferenceCore(on_swap=partial(report_swap, settings.model_name))
    store = ArtifactStore(registry.artifact_dir, registry.inline_limit_bytes, registry.max_artifact_bytes)
    sender = make_sender(kafka)

    def emit(dead_letter: KeyValue) -> None:  # the follower's dead letters, outside any batch's transaction
        send_all(kafka, kafka.topic(Topic.DEAD_LETTERS), [dead_letter], sender)

    stager = VersionStager(core, settings, store, emit, UnreadLag(kafka))
    follower = RegistryFollower(kafka, stager)

    def follow(stop: threading.Event) -> None:
        try:
            follower.run(stop)
        finally:
            stager.lag.close()

    def ready() -> bool:  # the loop asks before every take: a version staged while it waits swaps in now
        core.swap()
        return core.ready

    loop = kafka_loop(
        kafka, "inference", [Topic.FEATURES], core.process, settings.max_batch_size, settings.max_wait_ms / 1000,
        ready=ready, observe=partial(_record_metrics, settings.model_name),
    )  # fmt: skip
    return make_app("inference", kafka, follow, loop.run)
