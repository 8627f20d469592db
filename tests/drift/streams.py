"""Seeded outcome streams with a known drift, and the core that reads them."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from loopline.codec import Codec
from loopline.drift.core import DriftCore
from loopline.models import ArtifactFormat, ModelVersion, Status
from loopline.models.datasets import Concept, feature_names, sample
from loopline.records import SourceRecord
from loopline.settings import DriftSettings

N_FEATURES = 8
T0 = 1_795_000_000_000
OUTCOMES = "o"
OUTCOME = Codec.load("outcome")
PREDICTION = Codec.load("prediction")
VERSION = ModelVersion("m", 1, Status.SERVING, ArtifactFormat.ONNX, "00", feature_names(N_FEATURES), ["no", "yes"])
OTHER = dataclasses.replace(VERSION, model_name="team/n")  # a "/" in a name: state keys must not split on it
BEFORE, AFTER = Concept(seed=1, n_features=N_FEATURES), Concept(seed=2, n_features=N_FEATURES)


def drift_core(**settings) -> DriftCore:
    lookup = {("m", 1): VERSION, ("team/n", 1): OTHER}
    return DriftCore(DriftSettings(**settings), OUTCOMES, lambda m, v: lookup[(m, v)])


def stream(rows, seed, after_share=None, shift=None, noise=0.1):
    """Features, the model's predictions (the pre-drift concept) and the labels.

    ``after_share[i]`` is the chance that row i is labelled by the post-drift concept; labels are
    flipped with probability ``noise``.
    """
    rng = np.random.default_rng(seed + 1000)
    x, before = sample(BEFORE, rows, seed, shift)
    after = AFTER.label(x)
    share = np.zeros(rows) if after_share is None else after_share
    truth = np.where(rng.random(rows) < share, after, before)
    truth = np.where(rng.random(rows) < noise, 1 - truth, truth)
    return x, before, truth


class Records:
    """Outcome and prediction records with running offsets and timestamps (one per ms)."""

    def __init__(self):
        self.offsets = itertools.count()

    def outcomes(self, x, predicted, truth, model="m", partition=0, version=1):
        records = []
        for values, p, t in zip(x.tolist(), predicted.tolist(), truth.tolist(), strict=True):
            offset = next(self.offsets)
            value = OUTCOME.encode({
                "event_id": f"e{offset}", "event_time": T0 + offset, "entity_id": "u", "values": values,
                "model_name": model, "model_version": version, "shadow": False, "scores": [1.0 - p, float(p)],
                "predicted_class": "yes" if p else "no", "label": "yes" if t else "no",
                "label_time": T0 + offset, "prediction_delay_ms": 1, "label_delay_ms": 1, "correct": p == t,
                "log_loss": 0.1 if p == t else 2.3, "label_rate": 1.0,
            })  # fmt: skip
            records.append(SourceRecord(model.encode(), value, OUTCOMES, partition, offset, T0 + offset))
        return records

    def predictions(self, scores, partitions=(0,)):
        """Predictions of model m, spread over ``partitions`` in turn."""
        records = []
        for index, yes in enumerate(scores.tolist()):
            offset = next(self.offsets)
            value = PREDICTION.encode({
                "event_id": f"e{offset}", "event_time": T0 + offset, "prediction_time": T0 + offset,
                "entity_id": "u", "model_name": "m", "model_version": 1, "shadow": False,
                "scores": [1.0 - yes, yes], "predicted_class": "yes" if yes > 0.5 else "no",
                "queue_wait_ms": 0.0, "inference_ms": 0.0,
            })  # fmt: skip
            partition = partitions[index % len(partitions)]
            records.append(SourceRecord(f"e{offset}".encode(), value, "p", partition, offset, T0 + offset))
        return records


def run(core, records, batch=500):
    """Feed ``records`` in batches; return every output."""
    outputs = []
    for start in range(0, len(records), batch):
        outputs.append(core.process(records[start : start + batch]))
    return outputs
