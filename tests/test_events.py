"""Events made with loopline's public functions, read by the decoders the agents use."""

import math
import time
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from loopline import Vectoriser, decode_prediction, encode_features, encode_label
from loopline.codec import Codec, CodecError, FeatureDecoder, PredictionEncoder
from loopline.codec.typed import category_code

T0 = 1_795_000_000_000
FEATURES = Codec.load("features")


def test_a_dense_feature_event_takes_the_inference_fast_path_and_decodes_to_its_row():
    values = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    messages = [
        encode_features(f"e-{i}", f"user-{i % 3}", values=row, event_time=T0 + i) for i, row in enumerate(values)
    ]
    batch = FeatureDecoder(FEATURES, 5).decode(messages)
    assert batch.errors == []
    np.testing.assert_array_equal(batch.matrix, values)
    assert batch.event_ids == [f"e-{i}" for i in range(20)] and batch.entity_ids == [f"user-{i % 3}" for i in range(20)]
    assert batch.event_times.tolist() == [T0 + i for i in range(20)]
    assert all(FEATURES.decode(m)["fields"] == {} for m in messages)


def test_named_fields_decode_to_the_row_a_typed_version_takes():
    vectoriser = Vectoriser.of(["amount", "count", "country", "channel"], ["float", "int?", "category", "category?"])
    fields = {"amount": 12.5, "count": None, "country": "NL"}
    batch = FeatureDecoder(FEATURES, 4, vectoriser.inputs).decode([encode_features("e-1", "u", fields=fields,
                                                                                   event_time=T0)])  # fmt: skip
    assert batch.errors == [] and batch.event_ids == ["e-1"]
    row = batch.matrix[0].tolist()
    assert row[0] == 12.5 and math.isnan(row[1]) and row[2] == category_code("NL") and math.isnan(row[3])
    assert FEATURES.decode(encode_features("e-1", "u", fields=fields, event_time=T0))["values"] == []


def test_the_event_time_is_now_by_default_and_may_be_an_aware_datetime():
    before = time.time_ns() // 1_000_000
    stamped = FEATURES.decode(encode_features("e", "u", values=[1.0]))["event_time"]
    assert before <= stamped <= time.time_ns() // 1_000_000
    moment = datetime(2026, 12, 8, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    assert FEATURES.decode(encode_features("e", "u", values=[1.0], event_time=moment))["event_time"] == int(
        moment.timestamp() * 1000
    )
    with pytest.raises(ValueError, match="no time zone"):
        encode_features("e", "u", values=[1.0], event_time=datetime(2026, 12, 8))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "either values"),
        ({"values": [1.0], "fields": {"a": 1}}, "either values"),
        ({"values": [1.0], "event_id": ""}, "invalid-id"),
        ({"values": [1.0], "event_id": "x" * 1025}, "invalid-id"),
        ({"values": [1.0], "event_time": 10**14}, "invalid-time"),
        ({"fields": {"flag": True}}, "invalid-record"),
        ({"fields": {"tags": ["a"]}}, "invalid-record"),
    ],
)
def test_an_event_the_agents_would_dead_letter_is_refused_when_it_is_made(kwargs, match):
    event_id = kwargs.pop("event_id", "e")
    with pytest.raises(ValueError, match=match):
        encode_features(event_id, "u", **kwargs)


def test_a_label_is_the_record_the_join_reads():
    value = encode_label("e-1", "yes", event_time=datetime.fromtimestamp(T0 / 1000, UTC))
    assert Codec.load("label").decode(value) == {"event_id": "e-1", "event_time": T0, "label": "yes"}
    with pytest.raises(CodecError, match="invalid-id"):
        encode_label("", "yes")


@pytest.mark.parametrize("shadow", [False, True])
def test_a_prediction_written_by_the_inference_encoder_decodes_to_its_fields(shadow):
    batch = FeatureDecoder(FEATURES, 2).decode([encode_features(f"e-{i}", f"u-{i}", values=[i, -i], event_time=T0 + i)
                                                for i in range(3)])  # fmt: skip
    scores = np.array([[0.25, 0.75], [0.5, 0.5], [0.875, 0.125]], dtype=np.float32)
    waits = np.array([1.5, 2.0, 0.25], dtype=np.float32)
    encoded = PredictionEncoder(Codec.load("prediction"), "fraud", 7, ["no", "yes"], shadow).encode(
        batch, np.arange(3), scores, T0 + 50, waits, 0.5
    )
    predictions = [decode_prediction(value) for value in encoded]
    assert [(p.event_id, p.entity_id, p.event_time) for p in predictions] == [(f"e-{i}", f"u-{i}", T0 + i)
                                                                             for i in range(3)]  # fmt: skip
    assert [p.predicted_class for p in predictions] == ["yes", "no", "no"]
    assert [p.scores for p in predictions] == [tuple(row) for row in scores.tolist()]
    first = predictions[0]
    assert (first.model_name, first.model_version, first.shadow, first.prediction_time) == ("fraud", 7, shadow, T0 + 50)
    assert (first.queue_wait_ms, first.inference_ms) == (1.5, 0.5)
    with pytest.raises(CodecError, match="unknown-schema"):
        decode_prediction(encode_label("e-1", "yes"))
