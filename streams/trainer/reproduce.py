"""``loopline models reproduce``: retrain a version from its lineage and compare the weights.

The lineage names the outcome offset ranges, the hyper-parameters and the seed; the version's
metrics say how many of the rows were trained on (the rest was the gate's held-out slice). On the
CPU the same rows, config and seed give the same weights, so the ONNX artifacts, written node by
node, have the same sha256. A version trained on a GPU is compared by its largest weight difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from models import ArtifactFormat, ArtifactStore, ModelVersion, RegistryError, TrainConfig, train_mlp
from models.export import state_dict_bytes, to_onnx
from streams.settings import KafkaSettings
from streams.trainer.core import training_rows
from streams.trainer.window import read_ranges

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
    if artifact_format != ArtifactFormat.ONNX:
        raise RegistryError("only ONNX versions are compared by weight (the trainer writes ONNX)")
    return {init.name: numpy_helper.to_array(init) for init in onnx.load_from_string(data).graph.initializer}


def reproduce(kafka: KafkaSettings, version: ModelVersion, store: ArtifactStore) -> Reproduction:
    """Retrain ``version`` from its lineage on the CPU.

    Raises:
        RegistryError: the version has no data lineage (it was not trained from outcomes) or is not ONNX.
    """
    lineage = version.lineage
    if not lineage.get("data") or "train_rows" not in version.metrics:
        raise RegistryError(f"version {version.version} of {version.model_name} was not trained from outcomes")
    window = read_ranges(kafka, version.model_name, lineage["data"])
    x, y = training_rows(window, version.classes)
    rows = int(version.metrics["train_rows"])
    config = TrainConfig.from_strings(lineage["hyperparameters"])
    model = train_mlp(x[:rows], y[:rows], len(version.classes), config, device="cpu")
    again = to_onnx(model) if version.artifact_format == ArtifactFormat.ONNX else state_dict_bytes(model)
    published = store.fetch(version)
    ranges = ", ".join(f"{r['topic']}[{r['partition']}] {r['start']}..{r['end']}" for r in lineage["data"])
    if again == published:
        return Reproduction(True, 0.0, rows, ranges, config.seed)
    mine, theirs = _weights(again, version.artifact_format), _weights(published, version.artifact_format)
    difference = max(float(np.abs(mine[name] - theirs[name]).max()) for name in theirs)
    return Reproduction(False, difference, rows, ranges, config.seed)
