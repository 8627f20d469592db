"""The inference worker's version stager on its registry follower, without a broker: fallback, conflicts,
nothing to serve, and the same answer as ``loopline models list``."""

import logging
from dataclasses import replace
from functools import partial

import pytest

from loopline.agents import inference
from loopline.agents.inference import VersionStager
from loopline.codec import Codec
from loopline.inference.core import InferenceCore
from loopline.metrics import CANARY_TRAFFIC, MODEL_FALLBACKS, MODEL_SWAPS, SERVING_VERSION
from loopline.models import ArtifactStore, Status
from loopline.models.registry import RegistryFollower
from loopline.models.registry.admission import on_the_workers
from loopline.records import SourceRecord
from loopline.settings import InferenceSettings, KafkaSettings
from tests.helpers import N_FEATURES, small_model, tampered, version_of

VERSIONS = Codec.load("model_version")
SETTINGS = InferenceSettings(device="cpu", model_name="m")
DEAD = Codec.load("dead_letter")


class CountedLag:
    def __init__(self):
        self.reports, self.closed = 0, 0

    def report(self):
        self.reports += 1

    def close(self):
        self.closed += 1


@pytest.fixture
def follower(tmp_path):
    store = ArtifactStore(tmp_path, inline_limit=1 << 20)
    letters = []
    lag = CountedLag()
    core = InferenceCore(on_swap=partial(inference.report_swap, "m"))
    stager = VersionStager(core, SETTINGS, store, letters.append, lag)
    follower = RegistryFollower(KafkaSettings(), stager)
    follower.partitions = [0]
    offset = [0]

    def read(*versions, caught_up=True):
        records = []
        for version in versions:
            records.append(SourceRecord(version.key.encode(), VERSIONS.encode(version.to_record()), "t.model-versions",
                                        0, offset[0], 0))  # fmt: skip
            offset[0] += 1
        follower.read(records, {0: offset[0]} if caught_up else {})
        return [(DEAD.decode(v)["source_offset"], DEAD.decode(v)["reason"]) for _, v in letters]

    return stager, store, read, lag


def served(follower):
    follower.core.swap()
    return None if follower.core.serving is None else follower.core.serving.version.version


def test_a_start_on_a_failing_serving_version_falls_back_to_the_newest_retired_version_that_passes(follower):
    follower, store, read, lag = follower
    v1 = version_of(small_model(0), 1, store, status=Status.RETIRED)
    v2 = replace(version_of(small_model(1), 2, store, status=Status.RETIRED), feature_names=list("abcdef"))
    v3 = tampered(version_of(small_model(2), 3, store))  # serving, its artifact does not match its sha256
    fallbacks = MODEL_FALLBACKS.labels("m")._value.get()
    assert read(v1, v2, v3, caught_up=False) == [(2, "model-rejected")]  # v3 fails as soon as it is read...
    assert served(follower) is None
    assert read() == [(2, "model-rejected"), (1, "model-rejected")]  # ...the fallback waits for the topic's end
    assert served(follower) == 1 and MODEL_FALLBACKS.labels("m")._value.get() == fallbacks + 1
    assert SERVING_VERSION.labels("m", "serving")._value.get() == 1 and lag.closed == 1
    read()
    assert MODEL_FALLBACKS.labels("m")._value.get() == fallbacks + 1  # said once, not per poll
    v4 = version_of(small_model(3), 4, store)
    read(v3.with_status(Status.RETIRED, "replaced"), v4)
    assert served(follower) == 4  # a new serving version that passes replaces the fallback


def test_the_gauges_and_the_swap_count_change_when_a_version_swaps_in_not_when_it_is_staged(follower):
    follower, store, read, _ = follower

    def gauges():
        return (SERVING_VERSION.labels("m", "serving")._value.get(), SERVING_VERSION.labels("m", "canary")._value.get(),
                CANARY_TRAFFIC.labels("m")._value.get(), MODEL_SWAPS.labels("m", "serving")._value.get())  # fmt: skip

    read(version_of(small_model(0), 1, store), version_of(small_model(1), 2, store, Status.CANDIDATE))
    assert served(follower) == 1
    _, canary, traffic, swaps = gauges()
    assert gauges()[0] == 1
    read(*follower.registry.start_canary("m", 2, 0.25, "a canary"))
    assert gauges() == (1, canary, traffic, swaps)  # staged, not swapped in yet
    served(follower)
    assert follower.core.canary.version.version == 2 and gauges() == (1, 2, 0.25, swaps)
    read(*follower.registry.promote("m", 2, "promoted"))
    assert gauges() == (1, 2, 0.25, swaps)
    assert served(follower) == 2 and follower.core.canary is None
    assert gauges() == (2, 0, 0, swaps + 1)


def test_a_conflicting_record_is_dead_lettered_and_the_first_artifact_keeps_serving(follower):
    """Item 7: version 1 republished with another artifact is not swapped in."""
    follower, store, read, _ = follower
    v1 = version_of(small_model(0), 1, store)
    read(v1)
    assert served(follower) == 1
    first = follower.core.serving
    assert read(replace(version_of(small_model(1), 1, store), reason="swapped")) == [(1, "version-conflict")]
    assert served(follower) == 1 and follower.core.serving is first
    assert follower.registry.get("m", 1).sha256 == v1.sha256


def test_with_nothing_to_serve_the_worker_says_so_at_once_and_again_every_30s(follower, caplog, monkeypatch):
    """Item 12: a model name without a serving version is reported, with the versions that exist."""
    follower, store, read, lag = follower
    clock = [1000.0]
    monkeypatch.setattr(inference.time, "monotonic", lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="loopline.inference"):
        read(version_of(small_model(0), 1, store, name="other"))
        read()
        clock[0] += 29
        read()
    said = [r.getMessage() for r in caplog.records if "nothing to serve" in r.getMessage()]
    assert len(said) == 1 and "model 'm' has no versions (models in the registry: 'other'" in said[0]
    assert "LOOPLINE_INFERENCE_MODEL_NAME" in said[0]
    assert SERVING_VERSION.labels("m", "serving")._value.get() == 0 and lag.reports == 2  # once a second
    caplog.clear()
    candidate = version_of(small_model(0), 1, store, status=Status.CANDIDATE)
    with caplog.at_level(logging.WARNING, logger="loopline.inference"):
        clock[0] += 1
        read(candidate)
    assert ["nothing to serve: model 'm' has no serving version (versions: 1 candidate)" in r.getMessage()
            for r in caplog.records] == [True]  # fmt: skip
    assert not follower.core.ready
    read(candidate.with_status(Status.SERVING, "go"))
    assert follower.core.ready and lag.closed == 1


def test_a_shadow_version_goes_through_the_same_checks(follower):
    follower, store, read, _ = follower
    v1 = version_of(small_model(0), 1, store)
    other = replace(version_of(small_model(1), 2, store, status=Status.SHADOW), feature_names=list("abcdef"))
    assert read(v1, other) == [(1, "model-rejected")]
    follower.core.swap()
    assert follower.core.shadow is None and len(v1.feature_names) == N_FEATURES


@pytest.mark.parametrize("status", [Status.SERVING, Status.RETIRED])
def test_the_worker_serves_the_one_version_models_list_shows_as_serving(follower, status):
    """One rule for what serves: the stager's choice is the version ``on_the_workers`` (``loopline models list``)
    shows as serving, whether that version says serving or is a fallback."""
    follower, store, read, _ = follower
    v1 = version_of(small_model(0), 1, store, status=status)
    v2 = tampered(version_of(small_model(1), 2, store))  # says serving, fails its checks
    v3 = version_of(small_model(2), 3, store, status=status)
    v4 = replace(version_of(small_model(3), 4, store), feature_names=list("abcdef"))  # says serving, another contract
    read(v1, v2, v3, v4)
    shown = on_the_workers(follower.registry, "m", SETTINGS, store)
    registry = follower.registry
    listed = [v.version for v in registry.versions("m") if shown.get(v.version, (v.status.value,))[0] == "serving"]
    assert listed == [served(follower)] == [3]
