import numpy as np
import pytest

from loopline.codec import Codec, FeatureDecoder, PredictionEncoder


@pytest.mark.parametrize("shadow", [False, True])
def test_bulk_encoding_is_byte_identical_to_the_codec(shadow):
    codec = Codec.load("prediction")
    rng = np.random.default_rng(3)
    rows = 70
    scores = rng.random((rows, 3)).astype(np.float32)
    waits = rng.random(rows).astype(np.float32) * 10
    ids = [f"event-{i}" * (1 + i % 20) for i in range(rows)]  # lengths across the 1-byte varint limit
    ids[5] = "événement-5"  # not ASCII: decoded by the full codec, its bytes placed after the records'
    entities = [f"entity-{i}" for i in range(rows)]
    times = np.arange(rows, dtype=np.int64) + 1_795_000_000_000 - 10**12 * (np.arange(rows) % 3)  # 6 or 7 bytes
    features = Codec.load("features")
    batch = FeatureDecoder(features, 1).decode([
        features.encode({"event_id": e, "event_time": int(t), "entity_id": n, "values": [0.5]})
        for e, t, n in zip(ids, times, entities, strict=True)
    ])  # fmt: skip
    encoder = PredictionEncoder(codec, "fraud", 300, ["no", "maybe", "yes"], shadow)
    picked = np.arange(rows)[::-1]  # any rows of the batch, in any order
    out = encoder.encode(batch, picked, scores, 1_795_000_000_500, waits, 0.75)
    assert len(out) == rows
    ids, times, entities = [ids[r] for r in picked], times[picked], [entities[r] for r in picked]
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
    features = Codec.load("features")
    batch = FeatureDecoder(features, 1).decode([features.encode({"event_id": "e", "event_time": 0, "entity_id": "x",
                                                                 "values": [1.0]})])  # fmt: skip
    with pytest.raises(ValueError, match="3 columns"):
        encoder.encode(batch, np.arange(1), np.zeros((1, 3), np.float32), 0, np.zeros(1), 0.0)
