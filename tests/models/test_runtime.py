"""Every runtime backend goes through the same checks."""

import numpy as np
import pytest
import torch

from loopline.models import ArtifactFormat, BackendError, load_backend
from loopline.models.export import state_dict_bytes, to_onnx

BACKENDS = {
    "onnxruntime": (ArtifactFormat.ONNX, to_onnx),
    "torch": (ArtifactFormat.TORCH, state_dict_bytes),
}


def load(name, model, **kwargs):
    artifact_format, serialise = BACKENDS[name]
    return load_backend(serialise(model), artifact_format, n_features=6, n_classes=2, hidden=model.hidden, **kwargs)


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_backend_contract(name, trained, probe):
    backend = load(name, trained)
    assert backend.info.backend == name
    assert (backend.info.n_features, backend.info.n_classes) == (6, 2)
    for rows in (1, 7, 257):  # the batch axis is dynamic
        scores = backend.predict(probe[:rows])
        assert scores.shape == (rows, 2) and scores.dtype == np.float32
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback of a machine without a GPU")
@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_auto_device_falls_back_to_the_cpu(name, trained):
    assert load(name, trained).info.device == "cpu"
    with pytest.raises(BackendError, match="no CUDA GPU"):
        load(name, trained, device="cuda")


def test_onnx_and_torch_give_the_same_predictions(trained, probe):
    onnx_scores = load("onnxruntime", trained).predict(probe)
    torch_scores = load("torch", trained).predict(probe)
    np.testing.assert_allclose(onnx_scores, torch_scores, atol=1e-5)
    with torch.inference_mode():
        np.testing.assert_allclose(torch_scores, trained(torch.from_numpy(probe)).numpy(), atol=1e-6)


def test_a_backend_that_cannot_read_the_format_says_which_to_use(trained):
    with pytest.raises(BackendError, match="use onnxruntime"):
        load_backend(to_onnx(trained), ArtifactFormat.ONNX, n_features=6, n_classes=2, backend="torch")


def test_declared_widths_must_match_the_model(trained):
    with pytest.raises(BackendError, match="declares 5 features and 2 classes"):
        load_backend(to_onnx(trained), ArtifactFormat.ONNX, n_features=5, n_classes=2)


def test_garbage_is_not_a_model():
    with pytest.raises(BackendError, match="can't load"):
        load_backend(b"not onnx", ArtifactFormat.ONNX, n_features=6, n_classes=2)
