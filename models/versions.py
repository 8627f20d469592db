"""Turning a trained model (an MLP or boosted trees) into a registry version, and the bootstrap helper."""

from __future__ import annotations

import importlib.metadata
import platform
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np

from loopline.codec.typed import Vectoriser
from loopline.models.artifacts import ArtifactStore
from loopline.models.export import state_dict_bytes
from loopline.models.families import Config, Model, fit, onnx_bytes, probabilities
from loopline.models.mlp import TabularMLP
from loopline.models.pipelines import PipelineConfig
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
    x: np.ndarray | Sequence[Sequence[float]] | Sequence[Mapping[str, Any]],
    y: np.ndarray | Sequence[int] | Sequence[str],
    *,
    model_name: str,
    feature_names: Sequence[str],
    classes: Sequence[str],
    store: ArtifactStore,
    config: Config | None = None,
    pipeline: Any = None,
    version: int = 1,
    artifact_format: ArtifactFormat = ArtifactFormat.ONNX,
    holdout_fraction: float = 0.2,
    feature_types: Sequence[str] = (),
) -> ModelVersion:
    """Train a first version from a dataset (the most recent ``holdout_fraction`` rows held out).

    The version is a candidate with ``holdout_accuracy`` in its metrics; publish it with the status
    serving to serve it.

    Args:
        x: the rows: float vectors in ``feature_names`` order, or (with ``feature_types``) each
            event's named fields, turned into rows as the agents do
            (:class:`~loopline.codec.typed.Vectoriser`).
        y: each row's class, as an index into ``classes`` or as its name.
        model_name: the model the version belongs to.
        feature_names: the model's features.
        classes: the class names, in the order of the model's scores.
        store: where an artifact too large to travel inline is written.
        config: the family and hyper-parameters to train (the MLP's defaults when neither this
            nor ``pipeline`` is given).
        pipeline: an unfitted scikit-learn pipeline (or estimator) to train instead: its steps are
            recorded as a spec in the lineage (:func:`loopline.models.pipelines.spec_of`, its
            ColumnTransformer's columns named by ``feature_names``), and every retrain fits the same steps.
        version: the version number.
        artifact_format: ONNX, or a torch state dict (the MLP only).
        holdout_fraction: the share of the newest rows held out to score the version.
        feature_types: each feature's type (``float``, ``int``, ``category``, with ``?`` when optional)
            for a version that takes named fields.

    Raises:
        ValueError: both ``config`` and ``pipeline`` are given, a class name is not one of
            ``classes``, rows of fields come without ``feature_types``, or a pipeline parameter
            can't be written as data.
    """
    if pipeline is not None:
        if config is not None:
            raise ValueError("give a config or a pipeline, not both")
        config = PipelineConfig.of(pipeline, feature_names)
    config = config or TrainConfig()
    rows = _rows(x, feature_names, feature_types)
    labels = _class_indices(y, classes)
    split = int(len(rows) * (1 - holdout_fraction))
    start = time.perf_counter()
    model = fit(config, rows[:split], labels[:split], len(classes))
    duration_ms = int((time.perf_counter() - start) * 1000)
    holdout = accuracy(probabilities(model, rows[split:]), labels[split:])
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


def _rows(
    x: np.ndarray | Sequence[Sequence[float]] | Sequence[Mapping[str, Any]],
    feature_names: Sequence[str],
    feature_types: Sequence[str],
) -> np.ndarray:
    """The rows of ``x``: an array as it is, named fields vectorised, other sequences as float32."""
    if isinstance(x, np.ndarray):
        return x
    if len(x) and isinstance(x[0], Mapping):
        if not feature_types:
            raise ValueError("rows of named fields need feature_types to become a model's rows")
        return Vectoriser.of(feature_names, feature_types).matrix(cast(Sequence[Mapping[str, Any]], x))
    return np.asarray(x, dtype=np.float32)


def _class_indices(y: np.ndarray | Sequence[int] | Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Each row's class index: an array of indices as it is, names looked up in ``classes``."""
    labels = np.asarray(y)
    if labels.dtype.kind not in "USO":
        return labels if isinstance(y, np.ndarray) else labels.astype(np.int64)
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({str(label) for label in labels.tolist()} - set(index))
    if unknown:
        raise ValueError(f"classes {unknown} are not among {list(classes)}")
    return np.asarray([index[str(label)] for label in labels.tolist()], dtype=np.int64)
