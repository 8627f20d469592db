"""What may serve: the one admission policy of the inference workers, the trainer and the CLI.

A version may serve (or run in shadow, or as a canary) when it passes every check of
:func:`loopline.inference.loader.load_model` against its model's feature contract
(:meth:`RegistryView.contract`): :func:`admit`. What serves a model is the first of
:meth:`RegistryView.serving_candidates` that is admitted (:func:`serving_or_fallback`); a rollback
returns to the first earlier one that is (:func:`rollback_records`); and :func:`on_the_workers` says
what each version is on the workers by those rules, for ``loopline models list`` and ``show``. The
loading itself (artifact, backend, probe batch) stays in ``loopline.inference.loader``: it is how a
version is run, the same for a decision here and for the worker that serves it.
"""

from __future__ import annotations

from collections.abc import Callable

from loopline.inference.loader import LoadedModel, ModelRejected, load_model
from loopline.models.artifacts import ArtifactStore
from loopline.models.registry.fold import RegistryView
from loopline.models.registry.records import ModelVersion, RegistryError, Status
from loopline.settings import InferenceSettings

__all__ = ["Rejected", "admit", "on_the_workers", "rollback_records", "serving_or_fallback"]

Rejected = Callable[[ModelVersion, ModelRejected], None]
"""Told of each version that failed its checks on the way to one that passes."""


def admit(
    registry: RegistryView,
    version: ModelVersion,
    settings: InferenceSettings,
    store: ArtifactStore,
    *,
    shadow: bool = False,
) -> LoadedModel:
    """Every check a version must pass to serve (or run in shadow): :func:`load_model` against the
    model's feature contract in ``registry``.

    Raises:
        ModelRejected: a check failed.
    """
    contract = registry.contract(version.model_name)
    return load_model(version, settings, store, shadow=shadow, expected_features=contract)


def serving_or_fallback(
    registry: RegistryView, model_name: str, settings: InferenceSettings, store: ArtifactStore, rejected: Rejected
) -> LoadedModel | None:
    """What actually serves ``model_name``: the first of :meth:`RegistryView.serving_candidates` that passes
    (the most recently published version that says serving, else an earlier one that says so, else the
    newest retired one); None when nothing says serving or nothing passes.

    An inference worker with nothing loaded takes what this returns, so the CLI and the trainer name
    the version the workers serve.
    """
    for version in registry.serving_candidates(model_name):
        try:
            return admit(registry, version, settings, store)
        except ModelRejected as exc:
            rejected(version, exc)
    return None


def rollback_records(
    registry: RegistryView,
    model_name: str,
    reason: str,
    settings: InferenceSettings,
    store: ArtifactStore,
    to: int | None = None,
) -> tuple[list[ModelVersion], list[str]]:
    """The records of a rollback to ``to``, or to the first earlier version of
    :meth:`RegistryView.serving_candidates` that passes its checks (an earlier one that says serving, as
    another client may have left one, else the newest earlier retired one).

    Returns:
        The records to publish, and a line for each version skipped because it failed.

    Raises:
        ModelRejected: version ``to`` fails its checks.
        RegistryError: nothing serves, or no earlier retired version passes.
    """
    current = registry.serving(model_name)
    if current is None:
        raise RegistryError(f"model {model_name!r} has no serving version to roll back")
    if to is not None:
        admit(registry, registry.get(model_name, to), settings, store)
        return registry.rollback(model_name, reason, to), []
    skipped = []
    earlier = [v for v in registry.serving_candidates(model_name) if v.version < current.version]
    for version in earlier:
        try:
            admit(registry, version, settings, store)
        except ModelRejected as exc:
            skipped.append(f"skipped version {version.version}: {exc}")
            continue
        return registry.rollback(model_name, reason, version.version), skipped
    passing = " that passes its checks" if skipped else ""
    raise RegistryError(f"model {model_name!r} has no retired version before {current.version}{passing}"
                        + "".join(f"; {line}" for line in skipped))  # fmt: skip


def on_the_workers(
    registry: RegistryView, model_name: str, settings: InferenceSettings, store: ArtifactStore
) -> dict[int, tuple[str, str]]:
    """The versions of ``model_name`` whose role on the inference workers differs from what their record
    says, as (status, why). The workers' choice (:func:`serving_or_fallback`: their order and their
    checks) is the one ``serving`` version; any other version that says serving, or the canary or the
    shadow, is ``refused`` when it fails its checks, and another version that says serving and passes
    is ``superseded``."""
    shown: dict[int, tuple[str, str]] = {}

    def refused(version: ModelVersion, exc: ModelRejected) -> None:
        shown[version.version] = ("refused", f"fails its checks: {exc}")

    loaded = serving_or_fallback(registry, model_name, settings, store, refused)
    served = loaded.version if loaded is not None else None
    others = [v for v in registry.versions(model_name) if v.status == Status.SERVING]
    for version in [*others, *filter(None, [registry.canary(model_name), registry.shadow(model_name)])]:
        if version.version in shown or (served is not None and version.version == served.version):
            continue
        try:
            admit(registry, version, settings, store, shadow=version.status == Status.SHADOW)
        except ModelRejected as exc:
            refused(version, exc)
            continue
        if version.status == Status.SERVING:
            shown[version.version] = ("superseded", f"says serving, but version {served.version if served else '-'} "
                                                    f"serves; {version.reason}")  # fmt: skip
    if served is not None and served.status != Status.SERVING:
        shown[served.version] = ("serving", f"serves: every version that says serving fails its checks; "
                                            f"{served.reason}")  # fmt: skip
    return shown
