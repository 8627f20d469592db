"""Turning a trained model (an MLP or boosted trees) into a registry version, and the bootstrap helper."""

from __future__ import annotations

import importlib.metadata
import platform
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from loopline.models.artifacts import ArtifactStore
from loopline.models.export import state_dict_bytes
from loopline.models.families import Config, Model, fit, onnx_bytes, probabilities
from loopline.models.mlp import TabularMLP
from loopline.models.registry import ArtifactFormat, ModelVersion, Status, empty_lineage
from loopline.models.train import TrainConfig, accuracy

__all__ = ["bootstrap_version", "make_version", "package_versions"]


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a trained model, for its lineage."""
    names = ["loopline", "torch", "scikit-learn", "numpy", "onnx", "onnxruntime-gpu"]
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def make_version(
    model: Model,
    *,
    model_name: str,
    version: int,
    feature_names: Sequence[str],
    classes: Sequence[str],
    store: ArtifactStore,
    artifact_format: ArtifactFormat = ArtifactFormat.ONNX,
    metrics: dict[str, float] | None = None,
    lineage: dict[str, Any] | None = None,
    status: Status = Status.CANDIDATE,
    reason: str = "",
    feature_types: Sequence[str] = (),
) -> ModelVersion:
    """A version of ``model`` with its artifact attached (inline or in the store's directory); with
    ``feature_types``, one that takes typed inputs (``loopline.codec.typed``).

    An MLP's lineage always carries its hidden widths: a state dict can't be loaded without them.
    Other families are written as ONNX only.
    """
    if len(feature_names) != model.n_features or len(classes) != model.n_classes:
        raise ValueError("feature names and classes must match the model's input and output widths")
    lineage = lineage or empty_lineage()
    if artifact_format == ArtifactFormat.ONNX:
        data = onnx_bytes(model)
    elif isinstance(model, TabularMLP):
        data = state_dict_bytes(model)
    else:
        raise ValueError("only the MLP has a torch artifact: other families are written as ONNX only")
    if isinstance(model, TabularMLP):
        widths = ",".join(str(width) for width in model.hidden)
        lineage = lineage | {"hyperparameters": {"hidden": widths, **lineage["hyperparameters"]}}
    draft = ModelVersion(
        model_name=model_name,
        version=version,
        status=status,
        artifact_format=artifact_format,
        sha256="",
        feature_names=list(feature_names),
        feature_types=list(feature_types),
        classes=list(classes),
        metrics=dict(metrics or {}),
        lineage=lineage,
        reason=reason,
    )
    return store.attach(draft, data)


def bootstrap_version(
    x: np.ndarray,
    y: np.ndarray,
    *,
    model_name: str,
    feature_names: Sequence[str],
    classes: Sequence[str],
    store: ArtifactStore,
    config: Config | None = None,
    version: int = 1,
    artifact_format: ArtifactFormat = ArtifactFormat.ONNX,
    holdout_fraction: float = 0.2,
    feature_types: Sequence[str] = (),
) -> ModelVersion:
    """Train a first version of ``config``'s family (the MLP by default) from a dataset (the most
    recent ``holdout_fraction`` rows held out); with ``feature_types``, a version with typed inputs
    whose rows ``x`` are the :class:`loopline.codec.typed.Vectoriser`'s.

    The version is a candidate with ``holdout_accuracy`` in its metrics; promote it to serve.
    """
    config = config or TrainConfig()
    split = int(len(x) * (1 - holdout_fraction))
    start = time.perf_counter()
    model = fit(config, x[:split], y[:split], len(classes))
    duration_ms = int((time.perf_counter() - start) * 1000)
    holdout = accuracy(probabilities(model, x[split:]), y[split:])
    lineage = empty_lineage() | {
        "code_version": package_versions().get("loopline", ""),
        "hyperparameters": config.as_strings(),
        "seed": config.seed,
        "packages": package_versions(),
        "device": "cpu",
        "duration_ms": duration_ms,
    }
    return make_version(
        model,
        model_name=model_name,
        version=version,
        feature_names=feature_names,
        classes=classes,
        store=store,
        artifact_format=artifact_format,
        metrics={"holdout_accuracy": holdout, "train_rows": float(split)},
        lineage=lineage,
        reason="bootstrap from a dataset",
        feature_types=feature_types,
    )
