"""Regression sets: curated labeled cases a version must not get wrong before it may serve (no Kafka).

A model's regression set is ``<LOOPLINE_REGISTRY_REGRESSION_DIR>/<model>.csv``: a header naming
every served feature, ``label`` and, optionally, ``slice``; one case per row. Every promotion, by
the trainer or by hand (``loopline models promote``), runs the candidate and the serving version
on it (both loaded as the workers load them) and applies the rule:

- ``no-loss`` (the default): no case that the serving version gets right may be lost;
- ``slices``: every slice (all cases, where there is no ``slice`` column) must reach
  ``LOOPLINE_REGISTRY_REGRESSION_MIN_ACCURACY``.

The set's path, sha256 and size go into the candidate's lineage, so a version says which set it
passed (or failed). A rollback is not checked: it puts back a version that served.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from loopline.inference.loader import LoadedModel
from loopline.models import ModelVersion
from loopline.models.artifacts import sha256_hex
from loopline.settings import RegistrySettings

__all__ = ["RegressionError", "RegressionSet", "Verdict", "check", "check_version", "regression_set"]


class RegressionError(ValueError):
    """A regression set that can't be read or does not fit the model."""


@dataclass(frozen=True)
class RegressionSet:
    """The cases of one model's set: features in the served order, class indices, slice names."""

    path: Path
    sha256: str
    x: np.ndarray
    y: np.ndarray
    slices: list[str]

    @property
    def lineage(self) -> dict[str, Any]:
        """What a version records of the set it was checked on."""
        return {"path": str(self.path), "sha256": self.sha256, "cases": len(self.y)}


@dataclass(frozen=True)
class Verdict:
    passed: bool
    figures: str


def regression_set(settings: RegistrySettings, version: ModelVersion) -> RegressionSet | None:
    """The regression set of ``version``'s model, None when it has none.

    Raises:
        RegressionError: the file can't be read, lacks a served feature or ``label``, holds a value
            that is not a number or a label that is not one of the version's classes.
    """
    if settings.regression_dir is None:
        return None
    path = settings.regression_dir / f"{version.model_name}.csv"
    if not path.is_file():
        return None
    try:
        data = path.read_bytes()
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RegressionError(f"{path} can't be read as UTF-8 CSV: {exc}") from exc
    missing = [name for name in [*version.feature_names, "label"] if rows and name not in rows[0]]
    if not rows or missing:
        raise RegressionError(f"{path}: " + (f"no column {', '.join(missing)}" if rows else "no cases"))
    try:
        x = np.array([[float(row[name]) for name in version.feature_names] for row in rows], dtype=np.float32)
        y = np.array([version.classes.index(row["label"]) for row in rows], dtype=np.int64)
    except (TypeError, ValueError) as exc:  # a short row gives None for its missing values
        raise RegressionError(f"{path}: {exc} (features are numbers, labels one of {version.classes})") from exc
    if not np.isfinite(x).all():
        raise RegressionError(f"{path}: a feature is NaN or infinite")
    return RegressionSet(path, sha256_hex(data), x, y, [row.get("slice") or "all" for row in rows])


def check(
    cases: RegressionSet, candidate: LoadedModel, serving: LoadedModel | None, settings: RegistrySettings
) -> Verdict:
    """Whether ``candidate`` passes ``cases`` under the configured rule, with the figures in words."""
    right = candidate.backend.predict(cases.x).argmax(axis=1) == cases.y
    name = f"regression set {cases.path.name} (sha256 {cases.sha256[:12]}, {len(cases.y)} cases)"
    if settings.regression_rule == "no-loss":
        if serving is None:
            return Verdict(True, f"{name}: nothing serves to lose cases against")
        before = serving.backend.predict(cases.x).argmax(axis=1) == cases.y
        lost = np.flatnonzero(before & ~right)
        shown = ", ".join(str(row + 1) for row in lost[:10]) + (" ..." if len(lost) > 10 else "")
        if len(lost):
            return Verdict(False, f"{name}: loses {len(lost)} cases version {serving.version.version} gets right "
                                  f"(rows {shown})")  # fmt: skip
        return Verdict(True, f"{name}: {int(right.sum())} right, none lost against version {serving.version.version}")
    accuracies = {
        s: float(right[[i for i, x in enumerate(cases.slices) if x == s]].mean()) for s in sorted(set(cases.slices))
    }
    below = {s: a for s, a in accuracies.items() if a < settings.regression_min_accuracy}
    shown = ", ".join(f"{s} {a:.3f}" for s, a in (below or accuracies).items())
    if below:
        return Verdict(False, f"{name}: slices below the floor of {settings.regression_min_accuracy:.3f}: {shown}")
    return Verdict(True, f"{name}: every slice at or above {settings.regression_min_accuracy:.3f} ({shown})")


def check_version(settings: RegistrySettings, version: ModelVersion, candidate: LoadedModel,
                  serving: LoadedModel | None) -> tuple[ModelVersion, Verdict]:  # fmt: skip
    """The check of a promotion: ``version`` (loaded as ``candidate``) against what serves on its
    model's set; the version with the set in its lineage, and the verdict (passed, no figures,
    without a set). A set that can't be read fails: it was meant to hold."""
    try:
        cases = regression_set(settings, version)
    except RegressionError as exc:
        return version, Verdict(False, f"regression set failed: {exc}")
    if cases is None:
        return version, Verdict(True, "")
    verdict = check(cases, candidate, serving, settings)
    version = replace(version, lineage=version.lineage | {"regression_set": cases.lineage})
    return version, Verdict(verdict.passed, ("" if verdict.passed else "regression set failed: ") + verdict.figures)
