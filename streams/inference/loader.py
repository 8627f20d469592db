"""Loading a model version to run it, and the checks a version must pass to be loaded.

What may serve is decided in one place, :mod:`loopline.models.registry.admission`, whose
:func:`~loopline.models.registry.admission.admit` is :func:`load_model` against the model's feature
contract: the inference worker (at start and on every new version), the CLI (register, bootstrap,
promote, rollback), the trainer's gate and the rollback guard all go through it, so they agree on
which versions may serve. A version passes when its artifact is where artifacts may be, within the
size cap and matches its sha256; its features are the model's feature contract
(:meth:`loopline.models.Registry.contract`; a version with typed inputs names its own, of known
types); the backend loads it with the declared widths; and a probe batch gives one probability
distribution per row (a version that declares ``logits`` has the softmax applied by the loader; a
typed version's probe rows have category codes and, for optional inputs, missing values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loopline.codec import Codec, FeatureDecoder, PredictionEncoder
from loopline.codec.typed import Input, category_code, parse_inputs
from loopline.models import (
    ArtifactError,
    ArtifactStore,
    Backend,
    BackendError,
    BackendInfo,
    ModelVersion,
    Outputs,
    load_backend,
)
from loopline.settings import InferenceSettings

__all__ = [
    "PROBABILITY_TOLERANCE",
    "LoadedModel",
    "ModelRejected",
    "are_probabilities",
    "load_model",
]

PROBABILITY_TOLERANCE = 1e-3
"""How far a score row may be from a probability distribution: each score at least ``-tolerance``,
their sum within ``tolerance`` of 1 (float32 softmax outputs are within about 1e-6)."""


class ModelRejected(Exception):
    """A version failed a check and must not serve.

    Attributes:
        reason: short cause: ``artifact``, ``feature-mismatch``, ``feature-types``, ``load``, ``probe``,
            ``output-shape``, ``non-finite-output``, ``not-probabilities`` or ``regression`` (a promotion
            that fails its model's regression set).
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


class Softmax:
    """A backend whose artifact gives logits, read as class probabilities (a numerically stable softmax)."""

    def __init__(self, logits: Backend) -> None:
        self.logits = logits
        self.info: BackendInfo = logits.info

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities for a float32 batch."""
        scores = self.logits.predict(batch).astype(np.float32, copy=True)
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        return scores


def are_probabilities(scores: np.ndarray) -> np.ndarray:
    """Per row of ``scores``, whether it is a finite probability distribution within :data:`PROBABILITY_TOLERANCE`."""
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(scores).all(axis=1)
        non_negative = (scores >= -PROBABILITY_TOLERANCE).all(axis=1)
        sums_to_one = np.abs(scores.sum(axis=1, dtype=np.float64) - 1.0) <= PROBABILITY_TOLERANCE
    result: np.ndarray = finite & non_negative & sums_to_one
    return result


def probe_batch(rows: int, width: int, inputs: list[Input] | None = None) -> np.ndarray:
    """A fixed batch to run a new version on: zeros, ones and seeded normal rows; for typed inputs,
    the codes of made-up categories in category columns, and every optional value missing (NaN) in
    every third row."""
    batch = np.random.default_rng(0).normal(size=(rows, width)).astype(np.float32)
    batch[0] = 0.0
    if rows > 1:
        batch[1] = 1.0
    for column, spec in enumerate(inputs or []):
        if spec.type == "category":
            batch[:, column] = [category_code(f"probe-{row % 3}") for row in range(rows)]
        elif spec.type == "int":
            batch[:, column] = np.round(batch[:, column] * 10)
        if spec.optional:
            batch[2::3, column] = np.nan
    return batch


def load_model(
    version: ModelVersion,
    settings: InferenceSettings,
    store: ArtifactStore,
    *,
    shadow: bool,
    expected_features: list[str] | None,
) -> LoadedModel:
    """Fetch, check and load ``version``.

    Checks, in order: the artifact (inside the store's directory, within its size cap, matching
    its sha256), that the feature names equal ``expected_features`` (if given), that the backend
    loads it with the declared widths, and that a probe batch runs and gives one probability
    distribution per input row (after the softmax, for a version whose outputs are ``logits``).
    :func:`loopline.models.registry.admission.admit` is this with the model's feature contract as
    ``expected_features``.

    Raises:
        ModelRejected: a check failed; the message says which and why.
    """
    try:
        data = store.fetch(version)
    except ArtifactError as exc:
        raise ModelRejected("artifact", str(exc)) from exc
    try:
        inputs = parse_inputs(version.feature_names, version.feature_types) if version.feature_types else None
    except ValueError as exc:
        raise ModelRejected("feature-types", f"version {version.version}: {exc}") from exc
    if expected_features is not None and inputs is None and list(version.feature_names) != expected_features:
        raise ModelRejected(
            "feature-mismatch",
            f"version {version.version} takes features {version.feature_names}, the served ones are {expected_features}",
        )
    if version.outputs not in (Outputs.PROBABILITIES, Outputs.LOGITS):
        raise ModelRejected("load", f"version {version.version} declares outputs {version.outputs!r}: "
                            "use probabilities or logits")  # fmt: skip
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
    except (BackendError, ValueError) as exc:  # ValueError: hidden widths that are not numbers
        raise ModelRejected("load", str(exc)) from exc
    if version.outputs == Outputs.LOGITS:
        backend = Softmax(backend)
    probe = probe_batch(settings.probe_rows, len(version.feature_names), inputs)
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
    bad = np.flatnonzero(~are_probabilities(scores))
    if len(bad):
        row = scores[bad[0]]
        raise ModelRejected(
            "not-probabilities",
            f"version {version.version} gives {len(bad)} of {len(probe)} probe rows that are not probabilities "
            f"(row {bad[0]}: min {row.min():.4g}, sum {row.sum(dtype=np.float64):.4g}); a model that gives logits "
            "must declare outputs=logits",
        )
    return LoadedModel(
        version=version,
        backend=backend,
        decoder=FeatureDecoder(Codec.load("features"), len(version.feature_names), inputs),
        encoder=PredictionEncoder(
            Codec.load("prediction"), version.model_name, version.version, version.classes, shadow=shadow
        ),
    )
