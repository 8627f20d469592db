"""A package's own training code, as a team would plug it in: nearest class means, written as ONNX."""

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def train(x: np.ndarray, y: np.ndarray, params: dict[str, str], seed: int) -> bytes:
    """Scores are the negative squared distance to each class mean, times ``sharpness``, softmaxed."""
    classes = int(params["n_classes"])
    sharpness = float(params.get("sharpness", "1.0"))
    means = np.stack([x[y == c].mean(axis=0) if (y == c).any() else np.zeros(x.shape[1]) for c in range(classes)])
    weights = (2 * sharpness * means.T).astype(np.float32)  # -|x - m|^2 = 2 x.m - |m|^2 - |x|^2 (the last cancels)
    bias = (-sharpness * (means**2).sum(axis=1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["s"]), helper.make_node("Add", ["s", "b"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "nearest_mean",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", x.shape[1]])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name=f"acme-{seed}")
    model.ir_version = 8
    return model.SerializeToString()
