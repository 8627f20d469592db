import math
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from loopline.codec import Codec
from loopline.inference.core import InferenceCore, NotServing
from loopline.inference.loader import ModelRejected, load_model
from loopline.inference.split import bucket
from loopline.models import ArtifactStore, Status
from loopline.records import SourceRecord
from loopline.settings import InferenceSettings
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


class Interleaved(dict):
    """Staged versions whose iteration by ``swap`` calls ``meanwhile`` once: after its first item
    (``during`` the iteration) or after its last one (``after``, before ``swap`` goes on)."""

    def __init__(self, staged, when, meanwhile):
        super().__init__(staged)
        self.when, self.meanwhile, self.fired = when, meanwhile, False

    def items(self):
        for item in super().items():
            yield item
            self._fire("during")
        self._fire("after")

    def _fire(self, when):
        if when == self.when and not self.fired:
            self.fired = True
            self.meanwhile()


def on_another_thread(action):
    """Run ``action`` on another thread and wait for it: the follower staging while the loop swaps."""
    done = threading.Event()

    def run():
        action()
        done.set()

    def meanwhile():
        threading.Thread(target=run, daemon=True).start()
        assert done.wait(10), "staging waited for the swap"

    return meanwhile


@pytest.mark.parametrize("when", ["during", "after"])
def test_a_version_staged_from_another_thread_while_a_batch_swaps_serves_from_the_next_batch(models, store, when):
    core = core_with(load(version_of(models[0], 1, store)))
    core.process(records(rows(4)))
    v2 = load(version_of(models[1], 2, store))
    core.stage("shadow", None)  # something to swap in at the next batch's start
    core._staged = Interleaved(core._staged, when, on_another_thread(lambda: core.stage("serving", v2)))
    first = core.process(records(rows(4)))  # the loop thread swaps while the follower stages version 2
    assert first.dead_letters == [] and first.served_by == {1: 4}
    second = core.process(records(rows(4)))
    assert second.dead_letters == [] and second.served_by == {2: 4} and core.serving is v2


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


class Failing:
    """A backend that raises, as a GPU runtime does, on any batch holding a row whose first feature is
    above ``limit`` (on every batch when ``limit`` is None); otherwise it is ``inner``."""

    def __init__(self, inner, limit=None):
        self.inner, self.limit, self.info = inner, limit, inner.info
        self.calls = 0

    def predict(self, batch):
        self.calls += 1
        if self.limit is None or (batch[:, 0] > self.limit).any():
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.inner.predict(batch)


def failing(model, limit=None):
    return replace(model, backend=Failing(model.backend, limit))


def served_versions(out):
    return {
        PREDICTION.decode(value)["event_id"]: PREDICTION.decode(value)["model_version"] for _, value in out.predictions
    }


def test_rows_the_serving_version_fails_on_are_served_by_its_fallback(models, store):
    previous = load(version_of(models[0], 1, store, Status.RETIRED))
    core = InferenceCore()
    core.stage("serving", failing(load(version_of(models[1], 2, store)), limit=100), [previous])
    x = rows(40)
    x[[3, 30], 0] = 1000.0  # two rows the graph can't take
    out = core.process(records(x))
    assert out.dead_letters == []
    versions = served_versions(out)
    assert sorted(versions) == sorted(f"e{i}" for i in range(40))  # every event once
    assert {e for e, v in versions.items() if v == 1} == {"e3", "e30"}
    assert out.served_by == {2: 38, 1: 2} and out.fallback_rows == {(2, "1/cpu"): 2}
    assert out.switched_to is None and core.serving.version.version == 2  # the rows, not the backend
    assert core.process(records(rows(5))).served_by == {2: 5}


def test_a_broken_backend_moves_the_worker_to_its_fallback_for_that_batch_and_after(models, store):
    previous = load(version_of(models[0], 1, store, Status.RETIRED))
    broken = failing(load(version_of(models[1], 2, store)))
    core = InferenceCore()
    core.stage("serving", broken, [previous])
    out = core.process(records(rows(16)))
    assert out.dead_letters == [] and out.served_by == {1: 16} and out.switched_to is previous
    calls = broken.backend.calls
    after = core.process(records(rows(16)))
    assert after.served_by == {1: 16} and after.fallback_rows == {} and broken.backend.calls == calls
    core.stage("serving", load(version_of(models[1], 3, store)))  # the next version serves again
    assert core.process(records(rows(4))).served_by == {3: 4}


def test_a_row_that_nothing_serves_is_a_dead_letter_with_the_error_and_the_rest_is_served(models, store):
    core = core_with(failing(load(version_of(models[1], 2, store)), limit=100))
    x = rows(10)
    x[7, 0] = 1e6
    out = core.process(records(x))
    assert len(out.predictions) == 9 and out.fallback_rows == {(2, "none"): 1}
    [(_, letter)] = out.dead_letters
    decoded = DEAD.decode(letter)
    assert decoded["reason"] == "backend-error" and "CUDA error" in decoded["error"]
    assert decoded["key"] == b"e7"


def test_a_failing_shadow_costs_the_serving_path_nothing(models, store):
    core = core_with(load(version_of(models[0], 1, store)))
    core.stage("shadow", failing(load(version_of(models[1], 2, store, Status.SHADOW), shadow=True)))
    out = core.process(records(rows(6)))
    assert len(out.predictions) == 6 and out.dead_letters == []
    assert out.shadow_predictions == [] and out.shadow_failed


def canary_of(model, number, store, traffic):
    return replace(version_of(model, number, store, Status.CANARY), traffic=traffic)


def entity_records(count, entities, now=1_795_000_000_000):
    values = rows(count)
    return [SourceRecord(f"e{i}".encode(), features_record(values[i], f"e{i}", now, f"user-{i % entities}"),
                         "t.features", 0, i, now + 5) for i in range(count)]  # fmt: skip


def test_a_canary_serves_the_entities_of_its_share_and_each_entity_sees_one_version(models, store):
    core = core_with(load(version_of(models[0], 1, store)))
    core.stage("canary", load(canary_of(models[1], 2, store, 0.2)))
    batch = entity_records(1000, 200)
    by_entity: dict[str, set[int]] = {}
    for start in range(0, 1000, 100):  # every batch splits alike
        out = core.process(batch[start : start + 100])
        assert out.dead_letters == [] and out.canary_version == 2
        for _, value in out.predictions:
            p = PREDICTION.decode(value)
            by_entity.setdefault(p["entity_id"], set()).add(p["model_version"])
    assert all(len(versions) == 1 for versions in by_entity.values()) and len(by_entity) == 200
    canary = {entity for entity, versions in by_entity.items() if versions == {2}}
    assert canary == {entity for entity in by_entity if bucket("m", entity) < 0.2}
    assert 20 <= len(canary) <= 60  # 200 entities at 20%: 40, sd 5.7
    core.stage("canary", None)
    assert core.process(batch[:50]).served_by == {1: 50}


def test_rows_the_canary_fails_on_are_served_by_the_serving_version_and_a_broken_canary_is_dropped(models, store):
    core = core_with(load(version_of(models[0], 1, store)))
    core.stage("canary", failing(load(canary_of(models[1], 2, store, 0.5)), limit=100))
    batch = entity_records(200, 200)
    x = rows(200)
    in_canary = [i for i in range(200) if bucket("m", f"user-{i}") < 0.5]
    for i in in_canary[:3]:
        x[i, 0] = 1000.0
    batch = [SourceRecord(r.key, features_record(x[i], f"e{i}", entity_id=f"user-{i}"), r.topic, 0, i, r.timestamp_ms)
             for i, r in enumerate(batch)]  # fmt: skip
    out = core.process(batch)
    assert out.dead_letters == [] and out.served_by == {2: len(in_canary) - 3, 1: 200 - len(in_canary) + 3}
    assert out.fallback_rows == {(2, "1/cpu"): 3} and not out.canary_dropped
    core.stage("canary", failing(load(canary_of(models[1], 3, store, 0.5))))  # fails on every batch
    out = core.process(batch)
    assert out.dead_letters == [] and out.served_by == {1: 200} and out.canary_dropped and core.canary is None


def test_a_canary_or_shadow_of_another_input_is_left_out_until_the_inputs_agree(models, store):
    core = core_with(load(version_of(models[0], 1, store)))
    typed = replace(version_of(models[1], 2, store, Status.SHADOW), feature_types=["float"] * 6)
    core.stage("shadow", load(typed, shadow=True))
    core.stage("canary", load(replace(typed, status=Status.CANARY, traffic=0.5)))
    out = core.process(entity_records(100, 100))
    assert out.served_by == {1: 100} and out.shadow_predictions == [] and out.canary_version is None
