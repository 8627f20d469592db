import math
from pathlib import Path

import numpy as np
import pytest

from models import ArtifactStore, Status
from streams.codec import Codec
from streams.inference.core import InferenceCore, NotServing
from streams.inference.loader import ModelRejected, load_model
from streams.records import SourceRecord
from streams.settings import InferenceSettings
from tests.helpers import features_record, nan_model, rows, small_model, tampered, version_of

PREDICTION = Codec.load("prediction")
DEAD = Codec.load("dead_letter")
SETTINGS = InferenceSettings(device="cpu")


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(tmp_path, inline_limit=1 << 20)


@pytest.fixture(scope="module")
def models():
    return small_model(seed=0), small_model(seed=1)


def load(version, shadow=False, expected=None, store=None):
    store = store or ArtifactStore(Path("/nonexistent"), inline_limit=1 << 20)  # every version here is inline
    return load_model(version, SETTINGS, store, shadow=shadow, expected_features=expected)


def records(values_or_bytes, now=1_795_000_000_000):
    out = []
    for offset, item in enumerate(values_or_bytes):
        value = item if isinstance(item, bytes) else features_record(item, event_id=f"e{offset}", event_time=now)
        out.append(SourceRecord(f"e{offset}".encode(), value, "t.features", 0, offset, now + 5))
    return out


def core_with(model, clock=lambda: 1_795_000_000_050):
    core = InferenceCore(clock_ms=clock)
    core.stage("serving", model)
    return core


def test_no_serving_version_means_not_ready():
    core = InferenceCore()
    assert not core.ready
    with pytest.raises(NotServing):
        core.process(records(rows(2)))


def test_every_valid_event_gets_one_prediction(models, store):
    core = core_with(load(version_of(models[0], 1, store)))
    out = core.process(records(rows(50)))
    assert out.dead_letters == []
    decoded = [PREDICTION.decode(value) for _, value in out.predictions]
    assert [key for key, _ in out.predictions] == [f"e{i}".encode() for i in range(50)]
    assert [p["event_id"] for p in decoded] == [f"e{i}" for i in range(50)]
    assert {(p["model_name"], p["model_version"], p["shadow"]) for p in decoded} == {("m", 1, False)}
    assert decoded[0]["queue_wait_ms"] == 45.0 and decoded[0]["prediction_time"] == 1_795_000_000_050
    np.testing.assert_allclose(out.latencies_s, 0.05)
    expected = core.serving.backend.predict(rows(50))
    np.testing.assert_allclose([p["scores"] for p in decoded], expected, rtol=1e-6)


def test_bad_records_go_to_dead_letters_and_the_rest_is_served(models, store):
    core = core_with(load(version_of(models[0], 1, store)))
    good = rows(3)
    batch = records([good[0], b"junk", [1.0, 2.0], good[1], [math.nan] * 6, good[2]])
    out = core.process(batch)
    assert [key for key, _ in out.predictions] == [b"e0", b"e3", b"e5"]
    letters = [DEAD.decode(value) for _, value in out.dead_letters]
    assert [(d["source_offset"], d["reason"]) for d in letters] == [
        (1, "corrupt"),
        (2, "wrong-length"),
        (4, "non-finite"),
    ]
    assert letters[0]["value"] == b"junk" and letters[0]["source_topic"] == "t.features"
    assert letters[0]["event_id"] == "t.features/0/1" and "wrong-length" in out.dead_reasons


def test_a_staged_version_swaps_in_at_the_next_batch_only(models, store):
    core = core_with(load(version_of(models[0], 1, store)))
    first = core.process(records(rows(4)))
    core.stage("serving", load(version_of(models[1], 2, store)))
    assert core.serving.version.version == 1  # nothing changes until the next batch starts
    second = core.process(records(rows(4)))
    assert (first.version, second.version) == (1, 2)
    assert {PREDICTION.decode(v)["model_version"] for _, v in second.predictions} == {2}


def test_shadow_predictions_are_marked_and_kept_apart(models, store):
    core = core_with(load(version_of(models[0], 1, store)))
    core.stage("shadow", load(version_of(models[1], 2, store, Status.SHADOW), shadow=True))
    out = core.process(records(rows(5)))
    served = [PREDICTION.decode(v) for _, v in out.predictions]
    shadow = [PREDICTION.decode(v) for _, v in out.shadow_predictions]
    assert {(p["model_version"], p["shadow"]) for p in served} == {(1, False)}
    assert {(p["model_version"], p["shadow"]) for p in shadow} == {(2, True)}
    assert [p["event_id"] for p in shadow] == [p["event_id"] for p in served]
    core.stage("shadow", None)
    assert core.process(records(rows(2))).shadow_predictions == []


def test_a_corrupted_artifact_is_rejected(models, store):
    with pytest.raises(ModelRejected, match="sha256 mismatch") as err:
        load(tampered(version_of(models[0], 1, store)))
    assert err.value.reason == "artifact"


def test_a_model_that_outputs_nan_is_rejected(store):
    with pytest.raises(ModelRejected) as err:
        load(version_of(nan_model(), 1, store))
    assert err.value.reason == "non-finite-output"


def test_a_version_with_other_feature_names_is_rejected(models, store):
    with pytest.raises(ModelRejected) as err:
        load(version_of(models[0], 2, store), expected=["a", "b", "c", "d", "e", "f"])
    assert err.value.reason == "feature-mismatch"
