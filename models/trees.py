"""Gradient-boosted trees: scikit-learn's histogram boosting, trained and written as one ONNX graph.

The trees suit concepts made of thresholds and categories (a tree-shaped concept, a category code
stored as a number), where the MLP needs many more rows for the same accuracy. Training is
scikit-learn's :class:`~sklearn.ensemble.HistGradientBoostingClassifier` without early stopping,
so the same rows, config and seed give the same trees. The ONNX graph is written node by node from
the fitted trees (``TreeEnsembleRegressor`` of ``ai.onnx.ml`` for the summed raw scores, then a
MatMul and an Add that place them in the model's class columns, then Softmax): nothing but ONNX
Runtime is needed to serve it, and its probabilities are scikit-learn's to float32 precision.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from loopline.models.export import INPUT_NAME, OPSET, OUTPUT_NAME

__all__ = ["BoostedTrees", "TreesConfig", "train_trees", "trees_to_onnx"]

log = logging.getLogger(__name__)

ML_OPSET = 3
ABSENT = -1e30
"""Logit of a class no training row had: its probability is 0."""


@dataclass(frozen=True)
class TreesConfig:
    """Hyper-parameters of the boosted trees (scikit-learn's names)."""

    max_iter: int = 100
    learning_rate: float = 0.1
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 20
    l2_regularization: float = 0.0
    seed: int = 0

    family = "trees"

    def as_strings(self) -> dict[str, str]:
        """The hyper-parameters as the string map recorded in a version's lineage, with the family."""
        return {"family": self.family} | {key: str(value) for key, value in asdict(self).items()}

    @classmethod
    def from_strings(cls, values: dict[str, str]) -> TreesConfig:
        """Inverse of :meth:`as_strings`."""
        return cls(
            max_iter=int(values["max_iter"]),
            learning_rate=float(values["learning_rate"]),
            max_leaf_nodes=int(values["max_leaf_nodes"]),
            min_samples_leaf=int(values["min_samples_leaf"]),
            l2_regularization=float(values["l2_regularization"]),
            seed=int(values["seed"]),
        )


@dataclass(frozen=True)
class BoostedTrees:
    """A fitted ensemble and the width of the model's input and output."""

    estimator: HistGradientBoostingClassifier
    n_features: int
    n_classes: int

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (rows, n_classes); a class no training row had gets 0."""
        out = np.zeros((len(x), self.n_classes))
        seen = self.estimator.classes_
        out[:, seen] = self.estimator.predict_proba(x)[:, : len(seen)] if len(seen) > 1 else 1.0
        return out


def train_trees(x: np.ndarray, y: np.ndarray, n_classes: int, config: TreesConfig, threads: int = 1) -> BoostedTrees:
    """Fit boosted trees to features ``x`` and class indices ``y`` on ``threads`` CPU threads."""
    estimator = HistGradientBoostingClassifier(
        max_iter=config.max_iter, learning_rate=config.learning_rate, max_leaf_nodes=config.max_leaf_nodes,
        min_samples_leaf=config.min_samples_leaf, l2_regularization=config.l2_regularization,
        early_stopping=False, random_state=config.seed,
    )  # fmt: skip
    with threadpool_limits(threads):
        estimator.fit(np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64))
    log.info("%d boosting iterations on %d rows", estimator.n_iter_, len(y))
    return BoostedTrees(estimator, x.shape[1], n_classes)


def _float32_at_most(values: np.ndarray) -> np.ndarray:
    """The largest float32 not above each float64 threshold: for a float32 input ``v``,
    ``v <= threshold`` then holds exactly when it does in float64, as scikit-learn compares."""
    rounded = values.astype(np.float32)
    return np.where(rounded.astype(np.float64) > values, np.nextafter(rounded, np.float32(-np.inf)), rounded)


def trees_to_onnx(model: BoostedTrees) -> bytes:
    """Serialise ``model`` as an ONNX model: input ``features`` [batch, n], output ``probabilities``."""
    estimator = model.estimator
    if any(node["is_categorical"] for trees in estimator._predictors for tree in trees for node in tree.nodes):
        raise ValueError("categorical splits are not written to ONNX: train on numeric codes")
    per_iteration = estimator.n_trees_per_iteration_
    attrs: dict[str, Any] = {key: [] for key in [
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes", "nodes_truenodeids",
        "nodes_falsenodeids", "nodes_missing_value_tracks_true", "target_treeids", "target_nodeids", "target_ids",
        "target_weights"]}  # fmt: skip
    for iteration, trees in enumerate(estimator._predictors):
        for target, tree in enumerate(trees):
            tree_id = iteration * per_iteration + target
            nodes = tree.nodes
            leaf = nodes["is_leaf"].astype(bool)
            count = len(nodes)
            attrs["nodes_treeids"] += [tree_id] * count
            attrs["nodes_nodeids"] += list(range(count))
            attrs["nodes_featureids"] += np.where(leaf, 0, nodes["feature_idx"]).tolist()
            attrs["nodes_values"] += np.where(leaf, 0, _float32_at_most(nodes["num_threshold"])).tolist()
            attrs["nodes_modes"] += ["LEAF" if is_leaf else "BRANCH_LEQ" for is_leaf in leaf]
            attrs["nodes_truenodeids"] += np.where(leaf, 0, nodes["left"]).tolist()
            attrs["nodes_falsenodeids"] += np.where(leaf, 0, nodes["right"]).tolist()
            attrs["nodes_missing_value_tracks_true"] += np.where(leaf, 0, nodes["missing_go_to_left"]).tolist()
            leaves = np.flatnonzero(leaf)
            attrs["target_treeids"] += [tree_id] * len(leaves)
            attrs["target_nodeids"] += leaves.tolist()
            attrs["target_ids"] += [target] * len(leaves)
            attrs["target_weights"] += nodes["value"][leaves].tolist()
    seen = estimator.classes_
    placement = np.zeros((per_iteration, model.n_classes), dtype=np.float32)
    if len(seen) == 2:
        placement[0, seen[1]] = 1.0  # binary: one raw score r, the logits (0, r) give (1 - sigmoid(r), sigmoid(r))
    elif len(seen) > 2:
        placement[np.arange(len(seen)), seen] = 1.0
    offset = np.full(model.n_classes, ABSENT, dtype=np.float32)
    offset[seen] = 0.0
    nodes = [
        helper.make_node("TreeEnsembleRegressor", [INPUT_NAME], ["raw"], domain="ai.onnx.ml", n_targets=per_iteration,
                         aggregate_function="SUM", post_transform="NONE",
                         base_values=np.ravel(estimator._baseline_prediction).astype(float).tolist(), **attrs),
        helper.make_node("MatMul", ["raw", "placement"], ["placed"]),
        helper.make_node("Add", ["placed", "offset"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=1),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "loopline_boosted_trees",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", model.n_features])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", model.n_classes])],
        [numpy_helper.from_array(placement, "placement"), numpy_helper.from_array(offset, "offset")],
    )
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="loopline")
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return proto.SerializeToString()
