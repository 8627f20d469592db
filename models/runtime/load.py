"""Loading an artifact into the backend that reads its format, on the chosen device."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from loopline.models.registry import ArtifactFormat
from loopline.models.runtime.base import Backend, BackendError
from loopline.models.runtime.device import resolve_device

__all__ = ["load_backend"]

WARMUP_ROWS = (1, 64)


def load_backend(
    data: bytes,
    artifact_format: ArtifactFormat,
    *,
    n_features: int,
    n_classes: int,
    hidden: Sequence[int] = (),
    backend: str = "auto",
    device: str = "auto",
) -> Backend:
    """Load and warm up an artifact.

    ``backend="auto"`` picks the runtime that reads the artifact's format (onnxruntime for ONNX,
    torch for state dicts); ``device="auto"`` uses a GPU when torch sees one.

    Raises:
        BackendError: the backend can't read this format, the device isn't there, or the model
            doesn't load or has the wrong input and output widths.
    """
    chosen = {ArtifactFormat.ONNX: "onnxruntime", ArtifactFormat.TORCH: "torch"}[artifact_format]
    if backend not in ("auto", chosen):
        raise BackendError(f"the {backend} backend can't run a {artifact_format} artifact; use {chosen}")
    where = resolve_device(device)
    loaded: Backend
    if chosen == "onnxruntime":
        from loopline.models.runtime.onnxruntime_backend import OnnxBackend

        loaded = OnnxBackend(data, where)
    else:
        from loopline.models.runtime.torch_backend import TorchBackend

        if not hidden:
            raise BackendError("a torch artifact needs the hidden layer widths (hyperparameter 'hidden')")
        loaded = TorchBackend(data, where, n_features, n_classes, hidden)
    if (loaded.info.n_features, loaded.info.n_classes) != (n_features, n_classes):
        raise BackendError(
            f"the model takes {loaded.info.n_features} features and gives {loaded.info.n_classes} classes; "
            f"the version declares {n_features} features and {n_classes} classes"
        )
    for rows in WARMUP_ROWS:
        loaded.predict(np.zeros((rows, n_features), dtype=np.float32))
    return loaded
