"""``loopline models reproduce``: retrain a version from its lineage and compare the weights.

The lineage names the outcome offset ranges, the family, its hyper-parameters and the seed; the
version's metrics say which of the rows were trained on (``train_start_row``, ``train_rows``; the
newest were the gate's held-out slice). On the CPU the same rows, config and seed give the same
weights, so the ONNX artifacts, written node by node, have the same sha256. A version trained on a GPU is compared by its largest weight difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from loopline.models import ArtifactFormat, ArtifactStore, ModelVersion, RegistryError, TabularMLP
from loopline.models.export import state_dict_bytes
from loopline.models.families import config_from_strings, fit, onnx_bytes
from loopline.models.registry import load_registry
from loopline.settings import KafkaSettings
from loopline.trainer.core import training_rows
from loopline.trainer.window import read_ranges

__all__ = ["Reproduction", "reproduce"]


@dataclass(frozen=True)
class Reproduction:
    """How a retrain from the lineage compares with the published version."""

    identical: bool
    max_difference: float
    rows: int
    ranges: str
    seed: int


def _weights(data: bytes, artifact_format: ArtifactFormat) -> dict[str, np.ndarray]:
    """The graph's initializers and its nodes' float attributes (a tree ensemble's thresholds and leaves)."""
    if artifact_format != ArtifactFormat.ONNX:
        raise RegistryError("only ONNX versions are compared by weight (the trainer writes ONNX)")
    graph = onnx.load_from_string(data).graph
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        weights |= {f"{node.op_type}.{a.name}": np.asarray(a.floats) for a in node.attribute if len(a.floats)}
    return weights


def _difference(mine: np.ndarray | None, theirs: np.ndarray) -> float:
    """Largest absolute difference; infinite where the shapes differ (other trees, other widths)."""
    if mine is None or mine.shape != theirs.shape:
        return float("inf")
    return float(np.abs(mine - theirs).max()) if mine.size else 0.0


def reproduce(kafka: KafkaSettings, version: ModelVersion, store: ArtifactStore) -> Reproduction:
    """Retrain ``version`` from its lineage on the CPU.

    Raises:
        RegistryError: the version has no data lineage (it was not trained from outcomes) or is not ONNX.
    """
    lineage = version.lineage
    if not lineage.get("data") or "train_rows" not in version.metrics:
        raise RegistryError(f"version {version.version} of {version.model_name} was not trained from outcomes")
    window = read_ranges(kafka, version.model_name, lineage["data"], versions=load_registry(kafka).same_input(version))
    x, y = training_rows(window, version.classes)
    first, rows = int(version.metrics.get("train_start_row", 0)), int(version.metrics["train_rows"])
    config = config_from_strings(lineage["hyperparameters"])
    model = fit(config, x[first : first + rows], y[first : first + rows], len(version.classes))
    if version.artifact_format == ArtifactFormat.ONNX:
        again = onnx_bytes(model)
    elif isinstance(model, TabularMLP):
        again = state_dict_bytes(model)
    else:
        raise RegistryError(
            f"version {version.version} of {version.model_name} is a torch artifact of another family than the MLP"
        )
    published = store.fetch(version)
    ranges = ", ".join(f"{r['topic']}[{r['partition']}] {r['start']}..{r['end']}" for r in lineage["data"])
    if again == published:
        return Reproduction(True, 0.0, rows, ranges, config.seed)
    mine, theirs = _weights(again, version.artifact_format), _weights(published, version.artifact_format)
    difference = max(_difference(mine.get(name), theirs[name]) for name in theirs)
    return Reproduction(False, difference, rows, ranges, config.seed)
