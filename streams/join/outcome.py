"""The outcome of one prediction: what the join sends once its event's features and label are held (no Kafka)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from loopline.quality import LOG_LOSS_FLOOR

__all__ = ["outcome"]


def outcome(
    features: dict[str, Any],
    prediction: dict[str, Any],
    label: dict[str, Any],
    classes: Sequence[str],
    label_rate: float,
) -> dict[str, Any]:
    """The outcome record of the decoded ``prediction``, scored against ``label``.

    ``classes`` are the predicting version's, in score order, and the label one of them. The log loss
    is that of the label's score, floored at :data:`~loopline.quality.LOG_LOSS_FLOOR`; scores of
    another length than the classes score the label 0. The delays are counted from the features'
    event time.
    """
    scores = prediction["scores"]
    truth = label["label"]
    score = scores[list(classes).index(truth)] if len(scores) == len(classes) else 0.0
    event_time = features["event_time"]
    return {
        "event_id": features["event_id"],
        "event_time": event_time,
        "entity_id": features["entity_id"],
        "values": features["values"],
        "model_name": prediction["model_name"],
        "model_version": prediction["model_version"],
        "shadow": prediction["shadow"],
        "scores": scores,
        "predicted_class": prediction["predicted_class"],
        "label": truth,
        "label_time": label["event_time"],
        "prediction_delay_ms": prediction["prediction_time"] - event_time,
        "label_delay_ms": label["event_time"] - event_time,
        "correct": prediction["predicted_class"] == truth,
        "log_loss": -math.log(max(score, LOG_LOSS_FLOOR)),
        "label_rate": label_rate,
    }
