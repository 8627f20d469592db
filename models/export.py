"""Artifacts of a :class:`TabularMLP`: an ONNX graph with a dynamic batch axis, or a state dict.

The ONNX graph is written node by node (Sub, Div, Gemm, Relu, Softmax) from the module's tensors,
so the export is exact, deterministic and needs no tracing. State dicts are saved with
``torch.save`` and read back with ``weights_only=True``: no pickled code is ever loaded.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from loopline.models.mlp import TabularMLP

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "load_state_dict", "state_dict_bytes", "to_onnx"]

INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"
OPSET = 17


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float32)


def to_onnx(model: TabularMLP) -> bytes:
    """Serialise ``model`` as an ONNX model: input ``features`` [batch, n], output ``probabilities``."""
    inits = [
        numpy_helper.from_array(_array(model.mean), "mean"),
        numpy_helper.from_array(_array(model.scale), "scale"),
    ]
    nodes = [helper.make_node("Sub", [INPUT_NAME, "mean"], ["centred"]),
             helper.make_node("Div", ["centred", "scale"], ["h0"])]  # fmt: skip
    layers = model.linear_layers()
    for i, layer in enumerate(layers):
        inits += [
            numpy_helper.from_array(_array(layer.weight), f"w{i}"),
            numpy_helper.from_array(_array(layer.bias), f"b{i}"),
        ]
        out = f"g{i}" if i < len(layers) - 1 else "logits"
        nodes.append(helper.make_node("Gemm", [f"h{i}", f"w{i}", f"b{i}"], [out], transB=1))
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"h{i + 1}"]))
    nodes.append(helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=1))
    graph = helper.make_graph(
        nodes,
        "loopline_tabular_mlp",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", model.n_features])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", model.n_classes])],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="loopline")
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def state_dict_bytes(model: TabularMLP) -> bytes:
    """The module's tensors, saved with ``torch.save`` (tensors only, no code)."""
    out = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out)
    return out.getvalue()


def load_state_dict(data: bytes, n_features: int, n_classes: int, hidden: Sequence[int]) -> TabularMLP:
    """Rebuild a :class:`TabularMLP` from :func:`state_dict_bytes` output (``weights_only=True``)."""
    model = TabularMLP(n_features, n_classes, hidden)
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
