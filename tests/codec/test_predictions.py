import numpy as np
import pytest

from streams.codec import Codec, PredictionEncoder


@pytest.mark.parametrize("shadow", [False, True])
def test_bulk_encoding_is_byte_identical_to_the_codec(shadow):
    codec = Codec.load("prediction")
    rng = np.random.default_rng(3)
    rows = 70
    scores = rng.random((rows, 3)).astype(np.float32)
    waits = rng.random(rows).astype(np.float32) * 10
    ids = [f"event-{i}" * (1 + i % 20) for i in range(rows)]  # lengths across the 1-byte varint limit
    entities = [f"entity-{i}" for i in range(rows)]
    times = np.arange(rows, dtype=np.int64) + 1_795_000_000_000
    encoder = PredictionEncoder(codec, "fraud", 300, ["no", "maybe", "yes"], shadow)
    out = encoder.encode(ids, times, entities, scores, 1_795_000_000_500, waits, 0.75)
    assert len(out) == rows
    for i, data in enumerate(out):
        expected = {
            "event_id": ids[i], "event_time": int(times[i]), "prediction_time": 1_795_000_000_500,
            "entity_id": entities[i], "model_name": "fraud", "model_version": 300, "shadow": shadow,
            "scores": scores[i].tolist(), "predicted_class": ["no", "maybe", "yes"][int(scores[i].argmax())],
            "queue_wait_ms": float(waits[i]), "inference_ms": 0.75,
        }  # fmt: skip
        assert data == codec.encode(expected)
        assert codec.decode(data) == expected


def test_score_width_must_match_the_classes():
    encoder = PredictionEncoder(Codec.load("prediction"), "m", 1, ["a", "b"], False)
    with pytest.raises(ValueError, match="3 columns"):
        encoder.encode(["e"], np.zeros(1, np.int64), ["x"], np.zeros((1, 3), np.float32), 0, np.zeros(1), 0.0)
