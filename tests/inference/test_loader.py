"""The one validation path: what a version must pass to serve, fall back to, or be rolled back to."""

import io
import pickle
from dataclasses import replace

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from loopline.codec import Codec
from loopline.inference.core import InferenceCore
from loopline.inference.loader import ModelRejected
from loopline.models import ArtifactFormat, ArtifactStore, ModelVersion, Registry, RegistryError, Status
from loopline.models.export import OPSET
from loopline.models.registry import empty_lineage
from loopline.models.registry.admission import admit, rollback_records, serving_or_fallback
from loopline.records import SourceRecord
from loopline.settings import InferenceSettings
from tests.helpers import N_FEATURES, features_record, rows, small_model, tampered, version_of

SETTINGS = InferenceSettings(device="cpu")
DEAD = Codec.load("dead_letter")
NAMES = [f"x{i}" for i in range(N_FEATURES)]


def raw_scores(weights, bias, offset=None):
    """An ONNX model whose scores are ``x·W + b`` as they are (no softmax); with ``offset``: relu(x·W + b) + offset."""
    inits = [numpy_helper.from_array(np.asarray(weights, np.float32), "w"),
             numpy_helper.from_array(np.asarray(bias, np.float32), "b")]  # fmt: skip
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["z" if offset is not None else "y"], transB=1)]
    if offset is not None:
        inits.append(numpy_helper.from_array(np.asarray(offset, np.float32), "offset"))
        nodes += [helper.make_node("Relu", ["z"], ["r"]), helper.make_node("Add", ["r", "offset"], ["y"])]
    graph = helper.make_graph(
        nodes, "raw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", N_FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])], inits,
    )  # fmt: skip
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = 8
    return proto.SerializeToString()


def registered(store, data, number=1, outputs=None, status=Status.SERVING, fmt=ArtifactFormat.ONNX, names=NAMES):
    lineage = empty_lineage()
    lineage["hyperparameters"] = {"outputs": outputs} if outputs else {}
    draft = ModelVersion(model_name="m", version=number, status=status, artifact_format=fmt, sha256="",
                         feature_names=list(names), classes=["no", "yes"], lineage=lineage)  # fmt: skip
    return store.attach(draft, data)


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(tmp_path, inline_limit=1 << 20)


def fold(*versions):
    registry = Registry()
    for version in versions:
        registry.apply(version)
    return registry


def test_scores_that_are_not_probabilities_are_rejected(store):
    """Item 9: a model scoring -3e30 (finite) used to pass the probe and serve."""
    version = registered(store, raw_scores(np.zeros((2, N_FEATURES)), [-3e30, -3e30]))
    with pytest.raises(ModelRejected, match="must declare outputs=logits") as err:
        admit(fold(version), version, SETTINGS, store)
    assert err.value.reason == "not-probabilities"
    negative = registered(store, raw_scores(np.zeros((2, N_FEATURES)), [1.5, -0.5]), number=2)
    with pytest.raises(ModelRejected) as err:
        admit(fold(negative), negative, SETTINGS, store)
    assert err.value.reason == "not-probabilities"


def test_a_version_that_declares_logits_gets_the_softmax(store):
    weights = np.random.default_rng(0).normal(size=(2, N_FEATURES))
    version = registered(store, raw_scores(weights, [-3e30, 0.0]), outputs="logits")
    loaded = admit(fold(version), version, SETTINGS, store)
    batch = rows(50)
    logits = batch @ weights.T.astype(np.float32) + np.float32([-3e30, 0.0])
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(loaded.backend.predict(batch), expected, atol=1e-6)
    unknown = registered(store, raw_scores(weights, [0.0, 0.0]), number=2, outputs="odds")
    with pytest.raises(ModelRejected, match="declares outputs 'odds'"):
        admit(fold(unknown), unknown, SETTINGS, store)


def test_rows_that_are_not_probabilities_at_serve_time_are_dead_lettered(store):
    """A model that passes the probe but gives other scores on some input: those events are dead letters."""
    weights = np.zeros((2, N_FEATURES))
    weights[0, 0] = 1.0  # scores (0.5, 0.5) while x0 <= 100, (x0 - 99.5, 0.5) beyond
    version = registered(store, raw_scores(weights, [-100.0, 0.0], offset=[0.5, 0.5]))
    core = InferenceCore(clock_ms=lambda: 1_795_000_000_050)
    core.stage("serving", admit(fold(version), version, SETTINGS, store))
    values = rows(3)
    values[1, 0] = 200.0
    records = [SourceRecord(f"e{i}".encode(), features_record(v, f"e{i}"), "t.features", 0, i, 1_795_000_000_000)
               for i, v in enumerate(values)]  # fmt: skip
    out = core.process(records)
    assert [key for key, _ in out.predictions] == [b"e0", b"e2"]
    assert [(DEAD.decode(v)["source_offset"], DEAD.decode(v)["reason"]) for _, v in out.dead_letters] == [
        (1, "not-probabilities")
    ]


def test_a_pickle_as_a_state_dict_is_rejected_not_raised(store):
    class Boom:
        def __reduce__(self):
            return (print, ("this must never run",))

    data = io.BytesIO()
    pickle.dump({"w": Boom()}, data)
    version = registered(store, data.getvalue(), fmt=ArtifactFormat.TORCH)
    version = replace(version, lineage=version.lineage | {"hyperparameters": {"hidden": "8"}})
    with pytest.raises(ModelRejected) as err:
        admit(fold(version), version, SETTINGS, store)
    assert err.value.reason == "load"


def test_every_version_must_take_the_features_of_the_first_one_that_served(store):
    """Item 6: a version with other features is refused whether it is a candidate, shadow or serving."""
    v1 = version_of(small_model(), 1, store, status=Status.RETIRED)
    other = replace(version_of(small_model(1), 2, store), feature_names=[f"y{i}" for i in range(N_FEATURES)])
    registry = fold(v1, other)  # v2 was published as serving by a client that did not check
    for shadow in (False, True):
        with pytest.raises(ModelRejected) as err:
            admit(registry, other, SETTINGS, store, shadow=shadow)
        assert err.value.reason == "feature-mismatch"
    assert admit(registry, v1, SETTINGS, store).version.version == 1


def test_what_serves_falls_back_to_the_newest_retired_version_that_passes(store):
    v1 = version_of(small_model(), 1, store, status=Status.RETIRED)
    v2 = tampered(version_of(small_model(1), 2, store, status=Status.RETIRED))
    v3 = replace(version_of(small_model(2), 3, store), sha256="0" * 64)  # serving, with a wrong sha256
    rejected = []
    loaded = serving_or_fallback(
        fold(v1, v2, v3), "m", SETTINGS, store, lambda v, e: rejected.append((v.version, e.reason))
    )
    assert loaded.version.version == 1
    assert rejected == [(3, "artifact"), (2, "artifact")]
    assert serving_or_fallback(fold(v1, v2), "m", SETTINGS, store, rejected.append) is None  # nothing serves


def test_a_rollback_skips_versions_that_fail_and_says_which(store):
    v1 = version_of(small_model(), 1, store, status=Status.RETIRED)
    v2 = tampered(version_of(small_model(1), 2, store, status=Status.RETIRED))
    v3 = version_of(small_model(2), 3, store)
    records, skipped = rollback_records(fold(v1, v2, v3), "m", "worse", SETTINGS, store)
    assert [(r.version, r.status) for r in records] == [(3, Status.RETIRED), (1, Status.SERVING)]
    assert len(skipped) == 1 and skipped[0].startswith("skipped version 2: artifact: sha256 mismatch")
    with pytest.raises(ModelRejected, match="sha256 mismatch"):
        rollback_records(fold(v1, v2, v3), "m", "worse", SETTINGS, store, to=2)
    with pytest.raises(RegistryError, match="no retired version before 3 that passes its checks; skipped version 2"):
        rollback_records(fold(v2, v3), "m", "worse", SETTINGS, store)
