"""The registry state that model-version records add up to, and frozen snapshots of it (no I/O).

:class:`Registry` folds records in topic order; :class:`Snapshot` is one state of it that never
changes, for readers on other threads (``loopline.models.registry.follower``). Both answer the same
queries (:class:`RegistryView`): what serves, what runs beside it, the feature contract, and the
records a promotion, canary or rollback publishes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from loopline.models.registry.records import ModelVersion, RegistryError, Status, changed_fields

__all__ = ["Registry", "RegistryView", "Snapshot", "moved"]

Key = tuple[str, int]


class RegistryView:
    """The queries over folded version records; they read, never change what is held."""

    _latest: Mapping[Key, ModelVersion]
    """The latest record of each (model, version)."""
    _order: Mapping[Key, int]
    """The revision at which each (model, version)'s latest record was folded."""
    revision: int
    """How many records were folded: anything looked up holds while it stays the same."""

    def lookup(self, model_name: str, version: int) -> ModelVersion:
        """One version, for a core's ``lookup(model, version)``.

        Raises:
            KeyError: no such version.
        """
        return self._latest[(model_name, version)]

    def has(self, model_name: str, version: int) -> bool:
        """Whether version ``version`` of ``model_name`` is registered."""
        return (model_name, version) in self._latest

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
        trainer take it through ``loopline.models.registry.admission.serving_or_fallback``.
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
        (``loopline.models.registry.admission.rollback_records``: the first earlier one of :meth:`serving_candidates`
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


class Registry(RegistryView):
    """The state of every model's versions, folded from model-version records in topic order."""

    def __init__(self) -> None:
        self._latest: dict[Key, ModelVersion] = {}
        self._order: dict[Key, int] = {}
        self.revision = 0

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
        self.revision += 1
        self._latest[key] = version
        self._order[key] = self.revision
        return None

    def snapshot(self, read_to: Mapping[int, int] | None = None, complete: bool = False) -> Snapshot:
        """This state as a :class:`Snapshot`, which records folded later do not change."""
        return Snapshot(MappingProxyType(dict(self._latest)), MappingProxyType(dict(self._order)), self.revision,
                        MappingProxyType(dict(read_to or {})), complete)  # fmt: skip


@dataclass(frozen=True, eq=False, repr=False)
class Snapshot(RegistryView):
    """One state of a :class:`Registry`, frozen: a reader that holds it sees it as it was made, whatever
    is folded later (``Registry.snapshot``; the registry follower publishes one per change)."""

    _latest: Mapping[Key, ModelVersion]
    _order: Mapping[Key, int]
    revision: int = 0
    read_to: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))
    """The offset after the last record read of each model-versions partition (its end, once read to it)."""
    complete: bool = False
    """Every partition of model-versions was read to its end once: this is not a part of the topic's history."""

    def __repr__(self) -> str:
        return f"Snapshot(revision={self.revision}, versions={len(self._latest)}, complete={self.complete})"

    def registry(self) -> Registry:
        """A :class:`Registry` holding this state, to fold more records into (this snapshot stays as it is)."""
        thawed = Registry()
        thawed._latest, thawed._order, thawed.revision = dict(self._latest), dict(self._order), self.revision
        return thawed


def moved(before: RegistryView, after: RegistryView, model_name: str) -> str:
    """Which of ``model_name``'s serving, canary and shadow versions changed from ``before`` to ``after``
    ("" when none did; a canary's share may change): a decision taken on ``before`` is stale after such a change."""

    def live(registry: RegistryView) -> dict[str, int | None]:
        versions = {"serving": registry.serving(model_name), "canary": registry.canary(model_name),
                    "shadow": registry.shadow(model_name)}  # fmt: skip
        return {role: version.version if version else None for role, version in versions.items()}

    then, now = live(before), live(after)
    return ", ".join(f"{role} version {then[role]} → {now[role]}" for role in now if then[role] != now[role])
