"""loopline: closed-loop machine learning on Kafka.

The names below are the public API; everything else is reached through its module. They are
imported when first used (:pep:`562`), so ``import loopline`` stays light: a producer that only
encodes events never imports torch, ONNX Runtime, River or chdb.

Example:
    >>> import loopline
    >>> value = loopline.encode_features("e-1", "user-7", values=[0.5, -1.25, 3.0])
    >>> value[:2]
    b'\\xc3\\x01'
"""

from __future__ import annotations

import importlib
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopline.agents.app import run_worker
    from loopline.codec.typed import Vectoriser
    from loopline.events import Prediction, decode_prediction, encode_features, encode_label
    from loopline.models.artifacts import ArtifactStore
    from loopline.models.registry import ModelVersion, Registry, Status, load_registry, publish
    from loopline.models.versions import bootstrap_version
    from loopline.settings import KafkaSettings, RegistrySettings
    from loopline.sink.base import Sink
    from loopline.sink.clickhouse import ClickHouseSink

__all__ = [
    "ArtifactStore",
    "ClickHouseSink",
    "KafkaSettings",
    "ModelVersion",
    "Prediction",
    "Registry",
    "RegistrySettings",
    "Sink",
    "Status",
    "Vectoriser",
    "bootstrap_version",
    "decode_prediction",
    "encode_features",
    "encode_label",
    "load_registry",
    "publish",
    "run_worker",
]

_HOMES = {
    "KafkaSettings": "loopline.settings",
    "RegistrySettings": "loopline.settings",
    "Prediction": "loopline.events",
    "decode_prediction": "loopline.events",
    "encode_features": "loopline.events",
    "encode_label": "loopline.events",
    "ModelVersion": "loopline.models.registry",
    "Registry": "loopline.models.registry",
    "Status": "loopline.models.registry",
    "publish": "loopline.models.registry",
    "load_registry": "loopline.models.registry",
    "bootstrap_version": "loopline.models.versions",
    "ArtifactStore": "loopline.models.artifacts",
    "Vectoriser": "loopline.codec.typed",
    "run_worker": "loopline.agents.app",
    "Sink": "loopline.sink.base",
    "ClickHouseSink": "loopline.sink.clickhouse",
}
"""Each public name and the module it is defined in."""

__version__ = version("loopline")
"""The installed distribution's version."""


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'loopline' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
