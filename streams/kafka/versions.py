"""The model-versions topic: publish version records, and fold the topic into a :class:`Registry`."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace

from confluent_kafka import Producer

from loopline.codec import Codec, CodecError
from loopline.kafka.clients import read_to_end, send_all
from loopline.kafka.loop import RECORD_OVERHEAD_BYTES
from loopline.models import ArtifactStore, ModelVersion, Registry, RegistryError
from loopline.settings import KafkaSettings

__all__ = ["VersionLookup", "fit_to_topic", "load_registry", "publish_versions"]

log = logging.getLogger(__name__)


def fit_to_topic(version: ModelVersion, store: ArtifactStore, max_message_bytes: int) -> ModelVersion:
    """``version`` as a record the model-versions topic takes: when its record with the artifact inline
    would be larger than ``max_message_bytes`` (the topics' ``max.message.bytes``, less the room of
    Kafka's headers), the artifact goes to the store's directory instead and the record carries its URI.

    The store's inline limit (``LOOPLINE_REGISTRY_INLINE_LIMIT_BYTES``) is set apart from the topics'
    record size: a version whose artifact is within it, with thousands of feature names, or on topics
    that take less than it, would otherwise be a record no producer can send.

    Raises:
        ArtifactError: the file can't be written (see :meth:`ArtifactStore.attach`).
    """
    if version.artifact is None:
        return version
    size = len(version.key.encode()) + len(Codec.load("model_version").encode(version.to_record()))
    if size <= max_message_bytes - RECORD_OVERHEAD_BYTES:
        return version
    on_disk = ArtifactStore(store.directory, inline_limit=0, max_bytes=store.max_bytes)
    log.info("version %d of %s: a record of %d bytes with its artifact inline is more than the topic takes; "
             "the artifact goes to %s", version.version, version.model_name, size, store.directory)  # fmt: skip
    return on_disk.attach(replace(version, artifact=None), version.artifact)


def publish_versions(
    settings: KafkaSettings, versions: Sequence[ModelVersion], producer: Producer | None = None
) -> None:
    """Publish ``versions`` in order, each keyed ``model:version``; return once all are acknowledged.
    A ``producer`` from :func:`make_sender` saves a new connection per call.

    Version records are immutable once published: the topic is read first, and nothing is sent
    when one of ``versions`` changes more than the status of a published version.

    Raises:
        RegistryError: a record would change a published version's artifact, features or metadata.
    """
    registry = load_registry(settings)
    for version in versions:
        conflict = registry.apply(version)
        if conflict is not None:
            raise RegistryError(conflict)
    codec = Codec.load("model_version")
    records = [(v.key, codec.encode(v.to_record())) for v in versions]
    send_all(settings, settings.topic("model-versions"), records, producer)


def load_registry(settings: KafkaSettings) -> Registry:
    """The registry as the model-versions topic says now. Undecodable and conflicting records are
    logged and skipped."""
    codec = Codec.load("model_version")
    registry = Registry()
    for message in read_to_end(settings, settings.topic("model-versions")):
        try:
            conflict = registry.apply(ModelVersion.from_record(codec.decode(message.value() or b"")))
        except CodecError as exc:
            log.warning("skipping model-versions offset %s: %s", message.offset(), exc)
            continue
        if conflict is not None:
            log.warning("skipping model-versions offset %s: %s", message.offset(), conflict)
    return registry


class VersionLookup:
    """Registered versions by (model, version), for agents that must know a version's classes or features.

    A version it has not seen makes it read the model-versions topic again: a worker serves a
    version only after reading it there, so the first record of a new version finds it. The same
    unknown version is looked for at most once every ``refresh_s`` seconds, so that a stream of
    records naming a version that does not exist does not read the topic per record.
    """

    def __init__(self, settings: KafkaSettings, refresh_s: float = 1.0) -> None:
        self.settings, self.refresh_s = settings, refresh_s
        self.registry = Registry()
        self.missed: dict[tuple[str, int], float] = {}

    def __call__(self, model_name: str, version: int) -> ModelVersion:
        """The version, reading the topic again if it is new here.

        Raises:
            KeyError: no such version is registered.
        """
        key = (model_name, version)
        try:
            return self.registry.get(model_name, version)
        except RegistryError:
            if time.monotonic() - self.missed.get(key, float("-inf")) < self.refresh_s:
                raise KeyError(key) from None
        self.registry = load_registry(self.settings)
        try:
            return self.registry.get(model_name, version)
        except RegistryError:
            self.missed[key] = time.monotonic()
            raise KeyError(key) from None
