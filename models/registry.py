"""Model versions and the registry state they add up to.

The compacted model-versions topic is the source of truth: every record is the latest status of
one version of one model. :class:`Registry` folds those records into the current state, in topic
order; it does no I/O, so the CLI, the trainer and every inference worker share the same rules:

- the serving version of a model is the one whose latest record says ``serving`` (the most recently
  published, should two say so); what serves is the first of :meth:`Registry.serving_candidates`
  that passes its checks (``loopline.inference.loader``), for the workers and the CLI alike;
- promoting a version publishes it as serving and every other version that says serving as retired;
- a canary serves a share of the entities (its ``traffic``) instead of the serving version; one
  canary per model: starting another rejects the one before;
- rolling back publishes an earlier version as serving and the current one as retired;
- a version record is immutable once published: only its status (with its reason, time and id)
  changes. A later record of the same version with another artifact, features, classes or
  metadata is not folded; :meth:`Registry.apply` says why, and every reader reports it;
- a model's feature contract is set by the first version that served it with a dense vector (the
  lowest-numbered such version whose status is serving or retired): every dense version that is to
  serve must take the same features, since producers send values in that order. A version with
  typed inputs (``feature_types``) takes named fields and may declare any.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

__all__ = ["ArtifactFormat", "ModelVersion", "Outputs", "Registry", "RegistryError", "Status"]


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


class Registry:
    """The state of every model's versions, folded from model-version records in topic order."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, int], ModelVersion] = {}
        self._order: dict[tuple[str, int], int] = {}
        self._applied = 0

    def apply(self, version: ModelVersion) -> str | None:
        """Fold one record: the latest record of a version sets its status.

        Returns:
            None when the record was folded; otherwise why it was not: it changes more than the
            status of a version already published (the first record's artifact is kept).
        """
        key = (version.model_name, version.version)
        first = self._latest.get(key)
        if first is not None:
            changed = changed_fields(first, version)
            if changed:
                shas = f" (sha256 {version.sha256[:12]}, published {first.sha256[:12]})" if "sha256" in changed else ""
                return (f"version {version.version} of {version.model_name!r} is already published; a record with "
                        f"another {', '.join(changed)}{shas} is refused")  # fmt: skip
        self._applied += 1
        self._latest[key] = version
        self._order[key] = self._applied
        return None

    @property
    def revision(self) -> int:
        """How many records were folded: anything looked up in the registry holds while it stays the same."""
        return self._applied

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

    def serving_candidates(self, model_name: str) -> list[ModelVersion]:
        """The versions that may serve ``model_name``, in the order a worker tries them: every version whose
        latest record says serving, the most recently published first (another client may have published
        several), then the retired ones, newest first (:meth:`fallbacks`). Empty when none says serving.

        What serves is the first of them that passes its checks: an inference worker, the CLI and the
        trainer take it through ``loopline.inference.loader.serving_or_fallback``.
        """
        said = [(self._order[key], v) for key, v in self._latest.items()
                if key[0] == model_name and v.status == Status.SERVING]  # fmt: skip
        if not said:
            return []
        return [v for _, v in sorted(said, key=lambda item: -item[0])] + self.fallbacks(model_name)

    def shadow(self, model_name: str) -> ModelVersion | None:
        """The version that runs in shadow of the serving one, if any."""
        return self._latest_with(model_name, Status.SHADOW)

    def canary(self, model_name: str) -> ModelVersion | None:
        """The version that serves a share of ``model_name``'s entities instead of the serving one, if any."""
        return self._latest_with(model_name, Status.CANARY)

    def contract(self, model_name: str) -> list[str] | None:
        """The feature names a dense version of ``model_name`` must take to serve, None before any dense
        version served.

        They are those of the lowest-numbered dense version that has served (serving or retired): a
        version that served once fixed the values producers send, and version numbers survive
        compaction of the topic, where the order of records does not. Typed versions name their fields
        and are not bound by it.
        """
        served = [v for v in self.versions(model_name)
                  if v.status in (Status.SERVING, Status.RETIRED) and not v.feature_types]  # fmt: skip
        return list(served[0].feature_names) if served else None

    def same_input(self, version: ModelVersion) -> set[int]:
        """The versions of ``version``'s model that take the same input (feature names and types): their
        outcomes' values are rows ``version`` can learn from."""
        return {v.version for v in self.versions(version.model_name) if v.takes_input_of(version)}

    def fallbacks(self, model_name: str, below: int | None = None) -> list[ModelVersion]:
        """Retired versions of ``model_name`` (versions that served), newest first; only those below
        version ``below`` if given. A worker and a rollback take the first of them that passes its checks."""
        retired = [v for v in self.versions(model_name) if v.status == Status.RETIRED]
        return [v for v in reversed(retired) if below is None or v.version < below]

    def next_version(self, model_name: str) -> int:
        """The number a new version of ``model_name`` gets."""
        return max((v.version for v in self.versions(model_name)), default=0) + 1

    def _saying_serving(self, model_name: str, other_than: int) -> list[ModelVersion]:
        """The versions of ``model_name`` but ``other_than`` whose latest record says serving, by version number."""
        return [v for v in self.versions(model_name) if v.status == Status.SERVING and v.version != other_than]

    def promote(self, model_name: str, version: int, reason: str) -> list[ModelVersion]:
        """Records that make ``version`` serving and retire the version it replaces (and any other version
        that says serving, as another client may have left one)."""
        target = self.get(model_name, version)
        retired = [v.with_status(Status.RETIRED, f"replaced by version {version}: {reason}")
                   for v in self._saying_serving(model_name, version)]  # fmt: skip
        return [*retired, target.with_status(Status.SERVING, reason)]

    def start_canary(self, model_name: str, version: int, traffic: float, reason: str) -> list[ModelVersion]:
        """Records that make ``version`` the canary at ``traffic`` (or move its traffic), rejecting another canary.

        Raises:
            RegistryError: nothing serves (a canary serves beside a serving version), the version
                serves already or takes another input than the serving one (a batch is decoded
                once), or ``traffic`` is not between 0 and 1.
        """
        target = self.get(model_name, version)
        serving = self.serving(model_name)
        if serving is None or serving.version == version:
            raise RegistryError(f"version {version} of {model_name!r} can't be a canary: "
                                + ("it serves" if serving else "nothing serves beside it"))  # fmt: skip
        if not target.takes_input_of(serving):
            raise RegistryError(f"version {version} of {model_name!r} can't be a canary: it takes another input "
                                f"than version {serving.version}, which serves")  # fmt: skip
        records = [target.with_status(Status.CANARY, reason, traffic)]
        earlier = self.canary(model_name)
        if earlier is not None and earlier.version != version:
            records.insert(0, earlier.with_status(Status.REJECTED, f"superseded by canary version {version}"))
        return records

    def rollback(self, model_name: str, reason: str, to: int) -> list[ModelVersion]:
        """Records that put version ``to`` back to serving and retire the current one (and any other version
        that says serving).

        Which version to return to is the caller's choice, after its checks
        (``loopline.inference.loader.rollback_records``: the first earlier one of :meth:`serving_candidates`
        that passes).

        Raises:
            RegistryError: nothing serves, or there is no version ``to``.
        """
        current = self.serving(model_name)
        if current is None:
            raise RegistryError(f"model {model_name!r} has no serving version to roll back")
        target = self.get(model_name, to)
        retired = [v.with_status(Status.RETIRED, f"rolled back to version {to}: {reason}")
                   for v in self._saying_serving(model_name, to)]  # fmt: skip
        return [*retired, target.with_status(Status.SERVING, f"rollback from version {current.version}: {reason}")]


def moved(before: Registry, after: Registry, model_name: str) -> str:
    """Which of ``model_name``'s serving, canary and shadow versions changed from ``before`` to ``after``
    ("" when none did; a canary's share may change): a decision taken on ``before`` is stale after such a change."""

    def live(registry: Registry) -> dict[str, int | None]:
        versions = {"serving": registry.serving(model_name), "canary": registry.canary(model_name),
                    "shadow": registry.shadow(model_name)}  # fmt: skip
        return {role: version.version if version else None for role, version in versions.items()}

    then, now = live(before), live(after)
    return ", ".join(f"{role} version {then[role]} → {now[role]}" for role in now if then[role] != now[role])


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
