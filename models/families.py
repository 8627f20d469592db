"""The model families loopline trains: the tabular MLP (``mlp``), gradient-boosted trees (``trees``),
scikit-learn pipelines (``sklearn``, :mod:`loopline.models.pipelines`: each version records its own steps,
so it has no defaults and is only ever retrained as itself) and any family an installed package
provides (:mod:`loopline.models.plugins`).

A version's lineage records its family among its hyper-parameters (``family``; a lineage without
one is an MLP's). Each family has a config with ``as_strings``/``from_strings``, a training
function, probabilities in Python and an ONNX graph.
"""

from __future__ import annotations

import numpy as np
import torch

from loopline.models.export import to_onnx
from loopline.models.mlp import TabularMLP
from loopline.models.pipelines import FAMILY as PIPELINE
from loopline.models.pipelines import PipelineConfig, PipelineModel, train_pipeline
from loopline.models.plugins import PluginConfig, PluginModel, plugin_names, train_plugin
from loopline.models.train import TrainConfig, train_mlp
from loopline.models.trees import BoostedTrees, TreesConfig, train_trees, trees_to_onnx

__all__ = [
    "FAMILIES",
    "OPAQUE",
    "PIPELINE",
    "Config",
    "Model",
    "config_from_strings",
    "defaults",
    "fit",
    "onnx_bytes",
    "probabilities",
]

Config = TrainConfig | TreesConfig | PluginConfig | PipelineConfig
Model = TabularMLP | BoostedTrees | PluginModel | PipelineModel
FAMILIES: dict[str, type[TrainConfig] | type[TreesConfig]] = {"mlp": TrainConfig, "trees": TreesConfig}
"""The built-in families with defaults, which a retrain may choose among."""
OPAQUE = "file"
"""The family of a version registered from a model file without its training code: never retrained."""


def defaults(family: str) -> Config:
    """The default config of ``family``, built-in or provided by a package.

    Raises:
        ValueError: no such family, or a family without defaults (a pipeline's steps are its version's).
    """
    if family == PIPELINE:
        raise ValueError("a scikit-learn pipeline family has no defaults: each version records its steps")
    if family in FAMILIES:
        return FAMILIES[family]()
    if family in plugin_names():
        return PluginConfig(family)
    known = ", ".join([*FAMILIES, *plugin_names()])
    raise ValueError(f"unknown model family {family!r}, not one of {known}")


def config_from_strings(values: dict[str, str]) -> Config:
    """The config a lineage's hyper-parameters describe (an MLP's where they name no family).

    Raises:
        ValueError: the family is neither built in nor provided by an installed package.
    """
    family = values.get("family", "mlp")
    if family == PIPELINE:
        return PipelineConfig.from_strings(values)
    return type(defaults(family)).from_strings(values)


def fit(config: Config, x: np.ndarray, y: np.ndarray, n_classes: int, device: str = "cpu", threads: int = 1) -> Model:
    """A model of ``config``'s family fitted to ``x`` and class indices ``y`` (trees always on the CPU)."""
    if isinstance(config, TreesConfig):
        return train_trees(x, y, n_classes, config, threads)
    if isinstance(config, PluginConfig):
        return train_plugin(config, x, y, n_classes)
    if isinstance(config, PipelineConfig):
        return train_pipeline(config, x, y, n_classes)
    return train_mlp(x, y, n_classes, config, device=device)


def probabilities(model: Model, x: np.ndarray) -> np.ndarray:
    """Class probabilities of ``model`` on the float32 rows ``x``."""
    if isinstance(model, BoostedTrees | PluginModel | PipelineModel):
        return model.probabilities(x)
    with torch.inference_mode():
        return model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def onnx_bytes(model: Model) -> bytes:
    """``model`` as an ONNX graph: input ``features`` [batch, n], output ``probabilities``."""
    if isinstance(model, PluginModel):
        return model.data
    if isinstance(model, PipelineModel):
        return model.onnx()
    return trees_to_onnx(model) if isinstance(model, BoostedTrees) else to_onnx(model)
