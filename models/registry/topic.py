"""The model-versions topic: publish version records, and read it to its end once into a :class:`Registry`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from confluent_kafka import Producer

from loopline.codec import Codec, CodecError
from loopline.kafka.clients import read_to_end, send_all
from loopline.kafka.loop import RECORD_OVERHEAD_BYTES
from loopline.models.artifacts import ArtifactStore
from loopline.models.registry.fold import Registry
from loopline.models.registry.records import ModelVersion, RegistryError
from loopline.records import Topic
from loopline.settings import KafkaSettings

__all__ = ["fit_to_topic", "load_registry", "publish"]

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


def publish(settings: KafkaSettings, versions: Sequence[ModelVersion], producer: Producer | None = None) -> None:
    """Publish ``versions`` in order, each keyed ``model:version``; return once all are acknowledged.
    A ``producer`` from :func:`loopline.kafka.clients.make_sender` saves a new connection per call.

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
    send_all(settings, settings.topic(Topic.MODEL_VERSIONS), records, producer)


def load_registry(settings: KafkaSettings) -> Registry:
    """The registry as the model-versions topic says now, read to its end once (the CLI, a publication's
    check). Undecodable and conflicting records are logged and skipped."""
    codec = Codec.load("model_version")
    registry = Registry()
    for message in read_to_end(settings, settings.topic(Topic.MODEL_VERSIONS)):
        try:
            conflict = registry.apply(ModelVersion.from_record(codec.decode(message.value() or b"")))
        except CodecError as exc:
            log.warning("skipping model-versions offset %s: %s", message.offset(), exc)
            continue
        if conflict is not None:
            log.warning("skipping model-versions offset %s: %s", message.offset(), conflict)
    return registry
