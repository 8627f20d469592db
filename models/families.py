"""The model families loopline trains: the tabular MLP (``mlp``) and gradient-boosted trees (``trees``).

A version's lineage records its family among its hyper-parameters (``family``; a lineage without
one is an MLP's). Each family has a config with ``as_strings``/``from_strings``, a training
function, probabilities in Python and an ONNX graph written node by node.
"""

from __future__ import annotations

import numpy as np
import torch

from models.export import to_onnx
from models.mlp import TabularMLP
from models.train import TrainConfig, train_mlp
from models.trees import BoostedTrees, TreesConfig, train_trees, trees_to_onnx

__all__ = ["FAMILIES", "Config", "Model", "config_from_strings", "fit", "onnx_bytes", "probabilities"]

Config = TrainConfig | TreesConfig
Model = TabularMLP | BoostedTrees
FAMILIES: dict[str, type[TrainConfig] | type[TreesConfig]] = {"mlp": TrainConfig, "trees": TreesConfig}


def config_from_strings(values: dict[str, str]) -> Config:
    """The config a lineage's hyper-parameters describe (an MLP's where they name no family).

    Raises:
        ValueError: the family is not one of :data:`FAMILIES`.
    """
    family = values.get("family", "mlp")
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}, not one of {', '.join(FAMILIES)}")
    return FAMILIES[family].from_strings(values)


def fit(config: Config, x: np.ndarray, y: np.ndarray, n_classes: int, device: str = "cpu", threads: int = 1) -> Model:
    """A model of ``config``'s family fitted to ``x`` and class indices ``y`` (trees always on the CPU)."""
    if isinstance(config, TreesConfig):
        return train_trees(x, y, n_classes, config, threads)
    return train_mlp(x, y, n_classes, config, device=device)


def probabilities(model: Model, x: np.ndarray) -> np.ndarray:
    """Class probabilities of ``model`` on the float32 rows ``x``."""
    if isinstance(model, BoostedTrees):
        return model.probabilities(x)
    with torch.inference_mode():
        return model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def onnx_bytes(model: Model) -> bytes:
    """``model`` as an ONNX graph: input ``features`` [batch, n], output ``probabilities``."""
    return trees_to_onnx(model) if isinstance(model, BoostedTrees) else to_onnx(model)
