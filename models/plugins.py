"""Training code of your own: a model family named by a Python entry point of the group ``loopline.trainers``.

A package declares its training function, e.g. in its ``pyproject.toml``::

    [project.entry-points."loopline.trainers"]
    my-forest = "my_package.training:train"

``train(x, y, params, seed) -> bytes`` gets float32 features ``x`` (rows, n_features, in the served
order), class indices ``y``, the string parameters recorded in the lineage's hyper-parameters (the
serving version's when it is of this family, else none) with ``n_classes`` added, and the
trainer's seed, and returns an
ONNX graph that takes ``features`` (float32, [batch, n_features]) and gives class probabilities
([batch, n_classes], in the model's class order). Each candidate is checked as every version is
(the loader's probe batch). The same inputs must give the same bytes: ``loopline models
reproduce`` compares them. The family name and the package that provides it (with its version)
go into the lineage.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

import numpy as np
import onnxruntime as ort

__all__ = ["GROUP", "PluginConfig", "PluginModel", "plugin_names", "provider", "train_plugin"]

GROUP = "loopline.trainers"


@dataclass(frozen=True)
class PluginConfig:
    """A plug-in family and the parameters its training function gets."""

    family: str
    params: tuple[tuple[str, str], ...] = ()
    seed: int = 0

    def as_strings(self) -> dict[str, str]:
        """The lineage's hyper-parameters: the family, its parameters and the seed."""
        return {"family": self.family, **dict(self.params), "seed": str(self.seed)}

    @classmethod
    def from_strings(cls, values: dict[str, str]) -> PluginConfig:
        """Inverse of :meth:`as_strings`."""
        params = tuple(sorted((k, v) for k, v in values.items() if k not in ("family", "seed")))
        return cls(values["family"], params, int(values.get("seed", 0)))


@dataclass(frozen=True)
class PluginModel:
    """The ONNX graph a plug-in returned, and the widths it was trained for."""

    data: bytes
    n_features: int
    n_classes: int

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of the graph on the CPU."""
        session = ort.InferenceSession(self.data, providers=["CPUExecutionProvider"])
        scores: np.ndarray = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x, np.float32)})[0]
        return scores


def _entry_points() -> dict[str, EntryPoint]:
    return {point.name: point for point in entry_points(group=GROUP)}


def plugin_names() -> list[str]:
    """The families installed packages provide."""
    return sorted(_entry_points())


def provider(family: str) -> dict[str, str]:
    """The distribution that provides plug-in ``family`` and its version ({} if unknown)."""
    point = _entry_points().get(family)
    if point is None or point.dist is None:
        return {}
    return {point.dist.name: point.dist.version}


def train_plugin(config: PluginConfig, x: np.ndarray, y: np.ndarray, n_classes: int) -> PluginModel:
    """Run plug-in ``config.family``'s training function.

    Raises:
        ValueError: no installed package provides the family, or it returned no bytes.
    """
    point = _entry_points().get(config.family)
    if point is None:
        raise ValueError(f"no installed package provides the model family {config.family!r} ({GROUP} entry point)")
    params = dict(config.params) | {"n_classes": str(n_classes)}
    data = point.load()(np.ascontiguousarray(x, np.float32), np.asarray(y, np.int64), params, config.seed)
    if not isinstance(data, bytes):
        raise ValueError(f"the {config.family!r} trainer returned {type(data).__name__}, not ONNX bytes")
    return PluginModel(data, x.shape[1], n_classes)
