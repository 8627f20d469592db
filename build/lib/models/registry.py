"""Model versions and the registry state they add up to.

The compacted model-versions topic is the source of truth: every record is the latest status of
one version of one model. :class:`Registry` folds those records into the current state, in topic
order; it does no I/O, so the CLI, the trainer and every inference worker share the same rules:

- the serving version of a model is the one whose latest record says ``serving`` (the most recently
  published, should two say so);
- promoting a version publishes it as serving and the previous serving version as retired;
- rolling back publishes the previous version (by default the highest retired version below the
  current one) as serving and the current one as retired.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

__all__ = ["ArtifactFormat", "ModelVersion", "Registry", "RegistryError", "Status"]


class Status(StrEnum):
    """Life cycle of a version."""

    CANDIDATE = "candidate"
    SHADOW = "shadow"
    SERVING = "serving"
    RETIRED = "retired"
    REJECTED = "rejected"


class ArtifactFormat(StrEnum):
    """How the artifact bytes are to be read."""

    ONNX = "onnx"
    TORCH = "torch"


class RegistryError(ValueError):
    """A registry operation is not possible (unknown model or version, nothing to roll back to)."""


def now_ms() -> int:
    """The wall clock in epoch milliseconds."""
    return int(time.time() * 1000)


def empty_lineage() -> dict[str, Any]:
    """Lineage of a version that was not trained from Kafka data (e.g. registered by hand)."""
    return {
        "parent_version": None,
        "data": [],
        "code_version": "",
        "hyperparameters": {},
        "seed": 0,
        "packages": {},
        "device": "",
        "duration_ms": 0,
    }


@dataclass(frozen=True)
class ModelVersion:
    """One version of a named model, as published on the model-versions topic."""

    model_name: str
    version: int
    status: Status
    artifact_format: ArtifactFormat
    sha256: str
    feature_names: list[str]
    classes: list[str]
    artifact: bytes | None = None
    artifact_uri: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=empty_lineage)
    reason: str = ""
    created_time: int = field(default_factory=now_ms)
    event_time: int = field(default_factory=now_ms)
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def key(self) -> str:
        """Kafka key on the compacted topic: one record per model and version survives."""
        return f"{self.model_name}:{self.version}"

    def with_status(self, status: Status, reason: str) -> ModelVersion:
        """The same version with a new status, as a new record."""
        return replace(self, status=status, reason=reason, event_time=now_ms(), event_id=str(uuid.uuid4()))

    def to_record(self) -> dict[str, Any]:
        """The Avro record (``schemas/model_version.avsc``)."""
        return {
            "event_id": self.event_id,
            "event_time": self.event_time,
            "model_name": self.model_name,
            "version": self.version,
            "status": self.status.value,
            "reason": self.reason,
            "created_time": self.created_time,
            "artifact_format": self.artifact_format.value,
            "artifact": self.artifact,
            "artifact_uri": self.artifact_uri,
            "sha256": self.sha256,
            "feature_names": list(self.feature_names),
            "classes": list(self.classes),
            "metrics": dict(self.metrics),
            "lineage": self.lineage,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ModelVersion:
        """Inverse of :meth:`to_record`."""
        return cls(
            model_name=record["model_name"],
            version=record["version"],
            status=Status(record["status"]),
            artifact_format=ArtifactFormat(record["artifact_format"]),
            sha256=record["sha256"],
            feature_names=list(record["feature_names"]),
            classes=list(record["classes"]),
            artifact=record["artifact"],
            artifact_uri=record["artifact_uri"],
            metrics=dict(record["metrics"]),
            lineage=record["lineage"],
            reason=record["reason"],
            created_time=record["created_time"],
            event_time=record["event_time"],
            event_id=record["event_id"],
        )


class Registry:
    """The state of every model's versions, folded from model-version records in topic order."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, int], ModelVersion] = {}
        self._order: dict[tuple[str, int], int] = {}
        self._applied = 0

    def apply(self, version: ModelVersion) -> None:
        """Fold one record (the latest record of a version replaces the earlier ones)."""
        self._applied += 1
        key = (version.model_name, version.version)
        self._latest[key] = version
        self._order[key] = self._applied

    def models(self) -> list[str]:
        """Names of every model with at least one version."""
        return sorted({name for name, _ in self._latest})

    def versions(self, model_name: str) -> list[ModelVersion]:
        """Every version of ``model_name``, by version number."""
        return sorted((v for (n, _), v in self._latest.items() if n == model_name), key=lambda v: v.version)

    def get(self, model_name: str, version: int) -> ModelVersion:
        """One version.

        Raises:
            RegistryError: no such version.
        """
        try:
            return self._latest[(model_name, version)]
        except KeyError:
            raise RegistryError(f"model {model_name!r} has no version {version}") from None

    def _latest_with(self, model_name: str, status: Status) -> ModelVersion | None:
        found = [
            (self._order[key], v) for key, v in self._latest.items() if key[0] == model_name and v.status == status
        ]
        return max(found, key=lambda item: item[0])[1] if found else None

    def serving(self, model_name: str) -> ModelVersion | None:
        """The version that serves ``model_name`` now, if any."""
        return self._latest_with(model_name, Status.SERVING)

    def shadow(self, model_name: str) -> ModelVersion | None:
        """The version that runs in shadow of the serving one, if any."""
        return self._latest_with(model_name, Status.SHADOW)

    def next_version(self, model_name: str) -> int:
        """The number a new version of ``model_name`` gets."""
        return max((v.version for v in self.versions(model_name)), default=0) + 1

    def promote(self, model_name: str, version: int, reason: str) -> list[ModelVersion]:
        """Records that make ``version`` serving and retire the version it replaces."""
        target = self.get(model_name, version)
        records = [target.with_status(Status.SERVING, reason)]
        current = self.serving(model_name)
        if current is not None and current.version != version:
            records.insert(0, current.with_status(Status.RETIRED, f"replaced by version {version}: {reason}"))
        return records

    def rollback(self, model_name: str, reason: str, to: int | None = None) -> list[ModelVersion]:
        """Records that put the previous version (or ``to``) back to serving and retire the current.

        Raises:
            RegistryError: nothing serves, or there is no earlier retired version to return to.
        """
        current = self.serving(model_name)
        if current is None:
            raise RegistryError(f"model {model_name!r} has no serving version to roll back")
        if to is None:
            earlier = [
                v for v in self.versions(model_name) if v.status == Status.RETIRED and v.version < current.version
            ]
            if not earlier:
                raise RegistryError(f"model {model_name!r} has no retired version before {current.version}")
            to = earlier[-1].version
        target = self.get(model_name, to)
        return [
            current.with_status(Status.RETIRED, f"rolled back to version {to}: {reason}"),
            target.with_status(Status.SERVING, f"rollback from version {current.version}: {reason}"),
        ]
