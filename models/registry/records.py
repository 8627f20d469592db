"""Model-version records: one version of one model, as the model-versions topic carries it.

A version record is immutable once published: a later record of the same version may change only
its status (:data:`STATUS_FIELDS`); :func:`changed_fields` names what else one would change.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

__all__ = [
    "STATUS_FIELDS",
    "ArtifactFormat",
    "ModelVersion",
    "Outputs",
    "RegistryError",
    "Status",
    "changed_fields",
    "empty_lineage",
    "now_ms",
]


class Status(StrEnum):
    """Life cycle of a version."""

    CANDIDATE = "candidate"
    SHADOW = "shadow"
    CANARY = "canary"
    SERVING = "serving"
    RETIRED = "retired"
    REJECTED = "rejected"


class ArtifactFormat(StrEnum):
    """How the artifact bytes are to be read."""

    ONNX = "onnx"
    TORCH = "torch"


class Outputs(StrEnum):
    """What a model's score rows are: class probabilities, or logits that the loader turns into them."""

    PROBABILITIES = "probabilities"
    LOGITS = "logits"


STATUS_FIELDS = frozenset({"status", "traffic", "reason", "event_time", "event_id"})
"""The fields a later record of a version may change; every other field is fixed by its first record."""


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
        "regression_set": None,
        "requests": [],
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
    feature_types: list[str] = field(default_factory=list)
    """Empty for a dense float vector; else each feature's type (``loopline.codec.typed``)."""
    artifact: bytes | None = None
    artifact_uri: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=empty_lineage)
    reason: str = ""
    traffic: float = 0.0
    """A canary's share of the entities; 0 for any other status."""
    created_time: int = field(default_factory=now_ms)
    event_time: int = field(default_factory=now_ms)
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def outputs(self) -> str:
        """What the artifact's scores are (``probabilities`` unless the version declares ``logits``).

        Declared like the hidden widths, in the lineage's hyper-parameters (key ``outputs``): both
        say how to read the artifact, and the record schema stays as it is.
        """
        declared: str = self.lineage.get("hyperparameters", {}).get("outputs", Outputs.PROBABILITIES.value)
        return declared

    @property
    def key(self) -> str:
        """Kafka key on the compacted topic: one record per model and version survives."""
        return f"{self.model_name}:{self.version}"

    def takes_input_of(self, other: ModelVersion) -> bool:
        """Whether this version takes ``other``'s input: the same feature names and types (rows decoded or
        outcomes written for one fit the other)."""
        return (self.feature_names, self.feature_types) == (other.feature_names, other.feature_types)

    def with_status(self, status: Status, reason: str, traffic: float = 0.0) -> ModelVersion:
        """The same version with a new status (a canary's with its ``traffic``), as a new record."""
        if (status == Status.CANARY) != (0.0 < traffic < 1.0):
            raise RegistryError(f"a canary serves a share between 0 and 1 of the entities, not {status} at {traffic}")
        return replace(self, status=status, reason=reason, traffic=traffic, event_time=now_ms(),
                       event_id=str(uuid.uuid4()))  # fmt: skip

    def to_record(self) -> dict[str, Any]:
        """The Avro record (``schemas/model_version.avsc``)."""
        return {
            "event_id": self.event_id,
            "event_time": self.event_time,
            "model_name": self.model_name,
            "version": self.version,
            "status": self.status.value,
            "traffic": self.traffic,
            "reason": self.reason,
            "created_time": self.created_time,
            "artifact_format": self.artifact_format.value,
            "artifact": self.artifact,
            "artifact_uri": self.artifact_uri,
            "sha256": self.sha256,
            "feature_names": list(self.feature_names),
            "feature_types": list(self.feature_types),
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
            feature_types=list(record["feature_types"]),
            classes=list(record["classes"]),
            artifact=record["artifact"],
            artifact_uri=record["artifact_uri"],
            metrics=dict(record["metrics"]),
            lineage=record["lineage"],
            reason=record["reason"],
            traffic=record["traffic"],
            created_time=record["created_time"],
            event_time=record["event_time"],
            event_id=record["event_id"],
        )


def changed_fields(first: ModelVersion, later: ModelVersion) -> list[str]:
    """Names of the fields beyond the status that ``later`` changes in ``first`` (compared as JSON, so
    that a NaN metric equals itself)."""
    changed = []
    for f in fields(ModelVersion):
        if f.name in STATUS_FIELDS:
            continue
        before, after = getattr(first, f.name), getattr(later, f.name)
        if isinstance(before, dict) or isinstance(after, dict):
            same = json.dumps(before, sort_keys=True, default=str) == json.dumps(after, sort_keys=True, default=str)
        else:
            same = before == after
        if not same:
            changed.append(f.name)
    return changed
