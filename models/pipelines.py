"""Scikit-learn pipelines as a model family (``sklearn``): the steps travel in the lineage, each retrain fits them anew.

A version of this family records its unfitted pipeline as a JSON spec in its lineage's
hyper-parameters (``pipeline``), and the trainer rebuilds it from there: the same steps with the
same parameters, fitted to the new window. A spec is data, never code: an estimator is
``{"class": "sklearn.<module>.<Name>", "params": {...}}`` (a parameter that is an estimator is a
spec in turn), lists and tuples stay lists, NumPy scalar types are ``{"type": "numpy.float64"}``,
and only classes of scikit-learn's and NumPy's own modules are built. A ColumnTransformer's
columns are indices into the version's features (names are turned into them when the spec is
made). Every ``random_state`` left to None is set to the training seed, so that a retrain is
reproduced bit for bit.

The fitted pipeline goes to ONNX through skl2onnx (input ``features``, float32 [batch, n]); its
probabilities are then placed into the model's class columns by one MatMul, so that a class
missing from the training rows gets probability 0.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["PipelineConfig", "PipelineModel", "build", "spec_of", "train_pipeline"]

FAMILY = "sklearn"
ALLOWED_MODULES = ("sklearn.", "numpy")


def spec_of(estimator: Any, feature_names: Sequence[str] = ()) -> dict[str, Any]:
    """The spec of an (unfitted or fitted) scikit-learn estimator: its class and its own parameters.

    Raises:
        ValueError: a parameter can't be written as data (a function, an object of another library),
            or a column name is not one of ``feature_names``.
    """
    cls = type(estimator)
    name = f"{cls.__module__}.{cls.__qualname__}"
    if not name.startswith("sklearn."):
        raise ValueError(f"{name} is not a scikit-learn estimator")
    params = {key: _value(value, feature_names, key) for key, value in estimator.get_params(deep=False).items()}
    return {"class": name, "params": params}


def _value(value: Any, names: Sequence[str], key: str) -> Any:
    if hasattr(value, "get_params") and not isinstance(value, type):
        return spec_of(value, names)
    if isinstance(value, list | tuple):
        if key == "transformers":
            return [[step, _value(est, names, step), _columns(cols, names)] for step, est, cols in value]
        return [_value(item, names, key) for item in value]
    if isinstance(value, dict):
        return {str(k): _value(v, names, key) for k, v in value.items()}
    if isinstance(value, type) and value.__module__ == "numpy":
        return {"type": f"numpy.{value.__name__}"}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise ValueError(f"parameter {key!r} is {type(value).__name__}, which a pipeline spec can't hold")


def _columns(columns: Any, names: Sequence[str]) -> Any:
    if isinstance(columns, str) and columns in ("drop", "passthrough"):
        return columns
    items = [columns] if isinstance(columns, str | int) else list(columns)
    out = []
    for item in items:
        if isinstance(item, str):
            if item not in names:
                raise ValueError(f"column {item!r} is not one of the features {list(names)}")
            out.append(list(names).index(item))
        else:
            out.append(int(item))
    return out


def build(spec: Any, seed: int | None = None) -> Any:
    """The unfitted estimator a spec describes; ``random_state`` left to None is ``seed``.

    Raises:
        ValueError: the spec names a class outside scikit-learn and NumPy.
    """
    if isinstance(spec, list):
        return [build(item, seed) for item in spec]
    if not isinstance(spec, dict):
        return spec
    if "type" in spec and len(spec) == 1:
        return _imported(spec["type"])
    if "class" not in spec:
        return {key: build(value, seed) for key, value in spec.items()}
    cls = _imported(spec["class"])
    params = {}
    for key, value in spec["params"].items():
        if key in ("steps", "transformers", "transformer_list", "estimators"):
            params[key] = [(item[0], build(item[1], seed), *item[2:]) for item in value]
        else:
            params[key] = build(value, seed)
    if "random_state" in params and params["random_state"] is None and seed is not None:
        params["random_state"] = seed
    return cls(**params)


def _imported(dotted: str) -> Any:
    if not dotted.startswith(ALLOWED_MODULES):
        raise ValueError(f"{dotted} is outside scikit-learn and NumPy; a pipeline spec builds nothing else")
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class PipelineConfig:
    """A pipeline family's hyper-parameters: the spec (JSON) and the seed."""

    pipeline: str
    seed: int = 0
    family: str = FAMILY

    @classmethod
    def of(cls, estimator: Any, feature_names: Sequence[str], seed: int = 0) -> PipelineConfig:
        """The config of an (unfitted) scikit-learn pipeline or estimator, whose ColumnTransformer
        columns name ``feature_names``.

        Raises:
            ValueError: see :func:`spec_of`.
        """
        return cls(json.dumps(spec_of(estimator, feature_names)), seed)

    def as_strings(self) -> dict[str, str]:
        """The lineage's hyper-parameters."""
        return {"family": FAMILY, "pipeline": self.pipeline, "seed": str(self.seed)}

    @classmethod
    def from_strings(cls, values: dict[str, str]) -> PipelineConfig:
        """Inverse of :meth:`as_strings`.

        Raises:
            ValueError: no pipeline is recorded.
        """
        if "pipeline" not in values:
            raise ValueError("a scikit-learn pipeline version records its pipeline spec; this one records none")
        return cls(values["pipeline"], int(values.get("seed", 0)))


@dataclass(frozen=True)
class PipelineModel:
    """A fitted pipeline, and the model's class count its scores are placed into."""

    pipeline: Any
    n_features: int
    n_classes: int

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, a column per model class (0 for a class the fit never saw)."""
        fitted = np.asarray(self.pipeline.predict_proba(np.asarray(x, dtype=np.float32)), dtype=np.float32)
        out = np.zeros((len(x), self.n_classes), dtype=np.float32)
        out[:, self.pipeline.classes_.astype(np.int64)] = fitted
        return out

    def onnx(self) -> bytes:
        """The pipeline as an ONNX graph: ``features`` [batch, n] to ``probabilities`` [batch, classes]."""
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType

        final = self.pipeline.steps[-1][1] if hasattr(self.pipeline, "steps") else self.pipeline
        proto = to_onnx(self.pipeline, initial_types=[("features", FloatTensorType([None, self.n_features]))],
                        options={id(final): {"zipmap": False}},
                        target_opset={"": 17, "ai.onnx.ml": 3})  # fmt: skip
        fitted = next(o.name for o in proto.graph.output if o.name == "probabilities")
        place = np.zeros((len(self.pipeline.classes_), self.n_classes), dtype=np.float32)
        place[np.arange(len(self.pipeline.classes_)), self.pipeline.classes_.astype(np.int64)] = 1.0
        proto.graph.initializer.append(numpy_helper.from_array(place, "class_columns"))
        proto.graph.node.append(helper.make_node("MatMul", [fitted, "class_columns"], ["scores"]))
        del proto.graph.output[:]
        proto.graph.output.append(helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT,
                                                                [None, self.n_classes]))  # fmt: skip
        return bytes(proto.SerializeToString())


def train_pipeline(config: PipelineConfig, x: np.ndarray, y: np.ndarray, n_classes: int) -> PipelineModel:
    """The spec's pipeline fitted to ``x`` and class indices ``y``."""
    pipeline = build(json.loads(config.pipeline), config.seed)
    pipeline.fit(np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64))
    return PipelineModel(pipeline, x.shape[1], n_classes)
