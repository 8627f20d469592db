"""The model-versions topic: publish version records, and fold the topic into a :class:`Registry`."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from models import ModelVersion, Registry
from streams.codec import Codec, CodecError
from streams.kafka.clients import read_to_end, send_all
from streams.settings import KafkaSettings

__all__ = ["load_registry", "publish_versions"]

log = logging.getLogger(__name__)


def publish_versions(settings: KafkaSettings, versions: Sequence[ModelVersion]) -> None:
    """Publish ``versions`` in order, each keyed ``model:version``; return once all are acknowledged."""
    codec = Codec.load("model_version")
    send_all(settings, settings.topic("model-versions"), [(v.key, codec.encode(v.to_record())) for v in versions])


def load_registry(settings: KafkaSettings) -> Registry:
    """The registry as the model-versions topic says now. Undecodable records are logged and skipped."""
    codec = Codec.load("model_version")
    registry = Registry()
    for message in read_to_end(settings, settings.topic("model-versions")):
        try:
            registry.apply(ModelVersion.from_record(codec.decode(message.value() or b"")))
        except CodecError as exc:
            log.warning("skipping model-versions offset %s: %s", message.offset(), exc)
    return registry
