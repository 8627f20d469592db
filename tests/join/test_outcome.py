import math

import pytest

from loopline.join.outcome import outcome
from loopline.quality import LOG_LOSS_FLOOR

T0 = 1_795_000_000_000
FEATURES = {"event_id": "e1", "event_time": T0, "entity_id": "u", "values": [1.0, 2.0]}
LABEL = {"event_id": "e1", "event_time": T0 + 5000, "label": "yes"}


def prediction(scores, predicted="yes", shadow=False):
    return {"event_id": "e1", "event_time": T0, "prediction_time": T0 + 7, "entity_id": "u", "model_name": "m",
            "model_version": 2, "shadow": shadow, "scores": scores, "predicted_class": predicted}  # fmt: skip


def test_an_outcome_scores_the_label_by_its_class_and_counts_delays_from_the_event_time():
    record = outcome(FEATURES, prediction([0.2, 0.8]), LABEL, ("no", "yes"), 0.5)
    assert record == {
        "event_id": "e1", "event_time": T0, "entity_id": "u", "values": [1.0, 2.0], "model_name": "m",
        "model_version": 2, "shadow": False, "scores": [0.2, 0.8], "predicted_class": "yes", "label": "yes",
        "label_time": T0 + 5000, "prediction_delay_ms": 7, "label_delay_ms": 5000, "correct": True,
        "log_loss": pytest.approx(-math.log(0.8)), "label_rate": 0.5,
    }  # fmt: skip


def test_a_wrong_prediction_of_a_shadow_version_is_scored_as_wrong():
    record = outcome(FEATURES, prediction([0.9, 0.1], "no", shadow=True), LABEL, ["no", "yes"], 1.0)
    assert not record["correct"] and record["shadow"]
    assert record["log_loss"] == pytest.approx(-math.log(0.1))


def test_a_label_scored_zero_or_scores_of_another_length_cost_the_floored_loss():
    floored = -math.log(LOG_LOSS_FLOOR)
    assert outcome(FEATURES, prediction([1.0, 0.0], "no"), LABEL, ["no", "yes"], 1.0)["log_loss"] == floored
    assert outcome(FEATURES, prediction([0.5, 0.3, 0.2]), LABEL, ["no", "yes"], 1.0)["log_loss"] == floored
