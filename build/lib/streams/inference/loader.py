"""Loading a model version for serving, and the checks it must pass before it is swapped in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models import ArtifactError, ArtifactStore, Backend, BackendError, ModelVersion, load_backend
from streams.codec import Codec, FeatureDecoder, PredictionEncoder
from streams.settings import InferenceSettings

__all__ = ["LoadedModel", "ModelRejected", "load_model"]


class ModelRejected(Exception):
    """A version failed a check and must not serve.

    Attributes:
        reason: short cause: ``artifact``, ``feature-mismatch``, ``load``, ``probe``,
            ``output-shape`` or ``non-finite-output``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class LoadedModel:
    """A version ready to serve: its backend, and the codecs of its input and output."""

    version: ModelVersion
    backend: Backend
    decoder: FeatureDecoder
    encoder: PredictionEncoder


def probe_batch(rows: int, width: int) -> np.ndarray:
    """A fixed batch to run a new version on: zeros, ones and seeded normal rows."""
    batch = np.random.default_rng(0).normal(size=(rows, width)).astype(np.float32)
    batch[0] = 0.0
    if rows > 1:
        batch[1] = 1.0
    return batch


def load_model(
    version: ModelVersion,
    settings: InferenceSettings,
    *,
    shadow: bool,
    expected_features: list[str] | None,
) -> LoadedModel:
    """Fetch, check and load ``version``.

    Checks, in order: the artifact's sha256, that its feature names equal ``expected_features``
    (the serving version's, if any), that the backend loads it with the declared widths, and that
    a probe batch runs and gives one finite score row per input row.

    Raises:
        ModelRejected: a check failed; the message says which and why.
    """
    try:
        data = ArtifactStore.fetch(version)
    except ArtifactError as exc:
        raise ModelRejected("artifact", str(exc)) from exc
    if expected_features is not None and list(version.feature_names) != expected_features:
        raise ModelRejected(
            "feature-mismatch",
            f"version {version.version} takes features {version.feature_names}, the served ones are {expected_features}",
        )
    hidden = version.lineage.get("hyperparameters", {}).get("hidden", "")
    try:
        backend = load_backend(
            data,
            version.artifact_format,
            n_features=len(version.feature_names),
            n_classes=len(version.classes),
            hidden=tuple(int(width) for width in hidden.split(",") if width),
            backend=settings.backend,
            device=settings.device,
        )
    except BackendError as exc:
        raise ModelRejected("load", str(exc)) from exc
    probe = probe_batch(settings.probe_rows, len(version.feature_names))
    try:
        scores = backend.predict(probe)
    except Exception as exc:  # any runtime's failure on the probe batch keeps the version out
        raise ModelRejected("probe", f"the probe batch failed: {exc!r}") from exc
    if scores.shape != (len(probe), len(version.classes)):
        raise ModelRejected(
            "output-shape",
            f"probe output has shape {scores.shape}, expected {(len(probe), len(version.classes))}",
        )
    if not np.isfinite(scores).all():
        raise ModelRejected(
            "non-finite-output", f"version {version.version} gives NaN or infinite scores on the probe batch"
        )
    return LoadedModel(
        version=version,
        backend=backend,
        decoder=FeatureDecoder(Codec.load("features"), len(version.feature_names)),
        encoder=PredictionEncoder(
            Codec.load("prediction"), version.model_name, version.version, version.classes, shadow=shadow
        ),
    )
