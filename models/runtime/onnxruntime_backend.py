"""ONNX Runtime backend: the CUDA execution provider on a GPU, the CPU provider otherwise."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from loopline.models.runtime.base import BackendError, BackendInfo

__all__ = ["OnnxBackend"]


class OnnxBackend:
    """Runs an ONNX classifier with one float input [batch, n] and one output [batch, classes].

    On CUDA the input and output are bound through IO binding: one host-to-device copy of the
    batch and one device-to-host copy of the scores per call.
    """

    def __init__(self, data: bytes, device: str) -> None:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # Idle threads sleep instead of spinning: a worker shares its cores with its Kafka clients
        # (and, on small machines, the broker), which spinning threads starve.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(data, options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad models
            raise BackendError(f"onnxruntime can't load the artifact: {exc}") from exc
        if device == "cuda" and self.session.get_providers()[0] != "CUDAExecutionProvider":
            raise BackendError("onnxruntime has no working CUDA execution provider here")
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1 or len(inputs[0].shape) != 2 or len(outputs[0].shape) != 2:
            raise BackendError("the ONNX model must take one [batch, features] input and give [batch, classes]")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        n_features, n_classes = inputs[0].shape[1], outputs[0].shape[1]
        if not isinstance(n_features, int) or not isinstance(n_classes, int):
            raise BackendError("the ONNX model's feature and class axes must have fixed sizes")
        self.info = BackendInfo("onnxruntime", device, n_features, n_classes)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities for a float32 batch."""
        if self.info.device == "cuda":
            binding = self.session.io_binding()
            binding.bind_cpu_input(self.input_name, batch)
            binding.bind_output(self.output_name, "cpu")
            self.session.run_with_iobinding(binding)
            result = binding.copy_outputs_to_cpu()[0]
        else:
            result = self.session.run([self.output_name], {self.input_name: batch})[0]
        return np.asarray(result, dtype=np.float32)
