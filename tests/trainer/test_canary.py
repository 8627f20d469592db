"""The canary ramp: a challenger's share grows while its outcomes are not worse than the serving version's."""

from dataclasses import replace

import numpy as np
import pytest

from loopline.models import ModelVersion, Registry, RegistryError, Status
from loopline.models.registry import moved
from loopline.settings import TrainerSettings
from loopline.trainer.canary import Ramp, go_live
from loopline.trainer.core import Decision
from tests.samples import SAMPLES

SETTINGS = TrainerSettings(canary_steps="0.05,0.25,0.5", canary_outcomes=200)


def registry_with_canary(traffic=0.05):
    """Version 1 serving, version 2 its canary at ``traffic``."""
    registry = Registry()
    base = replace(ModelVersion.from_record(SAMPLES["model_version"]), model_name="m", version=1)
    registry.apply(base)
    registry.apply(replace(base, version=2, status=Status.CANDIDATE, event_id="v2"))
    for record in registry.start_canary("m", 2, traffic, "by hand"):
        registry.apply(record)
    return registry


def outcome(event, version, correct, shadow=False):
    return SAMPLES["outcome"] | {"model_name": "m", "event_id": event, "model_version": version, "shadow": shadow,
                                 "correct": bool(correct)}  # fmt: skip


def step(ramp, registry, serving_right, canary_right):
    """Feed the two arms' outcomes, one of each in turn; the verdicts."""
    verdicts = []
    for i, (serving, canary) in enumerate(zip(serving_right, canary_right, strict=True)):
        for record in (outcome(f"s{i}", 1, serving), outcome(f"c{i}", 2, canary)):
            verdicts += [v for v in [ramp.add(record, registry)] if v is not None]
    return verdicts


def test_a_canary_as_good_as_the_serving_version_is_ramped_step_by_step_then_served():
    rng = np.random.default_rng(0)
    registry, ramp = registry_with_canary(), Ramp(SETTINGS)
    shares = []
    for _ in range(3):
        [verdict] = step(ramp, registry, rng.random(300) < 0.85, rng.random(300) < 0.85)
        assert verdict.passed and verdict.version == 2 and "on 200 outcomes" in verdict.figures
        shares.append((verdict.traffic, verdict.next_traffic))
        if verdict.next_traffic is not None:
            for record in registry.start_canary("m", 2, verdict.next_traffic, "next"):
                registry.apply(record)
    assert shares == [(0.05, 0.25), (0.25, 0.5), (0.5, None)]  # each step judged once, the last one serves


def test_a_canary_worse_beyond_the_margin_and_the_noise_is_aborted_and_a_slightly_worse_one_is_not():
    rng = np.random.default_rng(1)
    serving = rng.random(200) < 0.9
    [bad] = step(Ramp(SETTINGS), registry_with_canary(), serving, rng.random(200) < 0.7)
    assert not bad.passed and bad.next_traffic is None and "below the" in bad.figures
    [close] = step(Ramp(SETTINGS), registry_with_canary(), serving, serving & (rng.random(200) < 0.98))
    assert close.passed and "within the" in close.figures


def test_shadow_outcomes_other_versions_and_a_ramp_that_is_off_count_nothing():
    registry = registry_with_canary()
    ramp = Ramp(SETTINGS)
    assert [ramp.add(outcome(f"e{i}", v, True, shadow=v == 2), registry) for i in range(300) for v in (1, 2, 7)] \
        == [None] * 900  # fmt: skip
    off = Ramp(TrainerSettings(canary_outcomes=2))
    assert step(off, registry, [True] * 10, [False] * 10) == []


def test_an_outcome_read_twice_counts_once():
    registry, ramp = registry_with_canary(), Ramp(SETTINGS)
    assert step(ramp, registry, [True] * 150, [True] * 150) == []
    assert step(ramp, registry, [True] * 150, [True] * 150) == []  # the same events again: a batch read twice
    [verdict] = step(ramp, registry, [True] * 200, [True] * 200)
    assert "on 200 outcomes" in verdict.figures


def test_a_step_changed_meanwhile_starts_the_counts_again():
    registry, ramp = registry_with_canary(), Ramp(SETTINGS)
    assert step(ramp, registry, [True] * 150, [True] * 150) == []
    for record in registry.start_canary("m", 2, 0.25, "moved by hand"):
        registry.apply(record)
    [verdict] = step(ramp, registry, [True] * 200, [True] * 200)  # 150 + 50 would have judged the old step
    assert verdict.traffic == 0.25


def test_the_registry_keeps_one_canary_per_model_beside_a_serving_version():
    registry = registry_with_canary()
    base = registry.get("m", 2)
    registry.apply(replace(base, version=3, status=Status.CANDIDATE, event_id="v3"))
    records = registry.start_canary("m", 3, 0.1, "newer")
    assert [(r.version, r.status, r.traffic) for r in records] == [(2, Status.REJECTED, 0.0), (3, Status.CANARY, 0.1)]
    with pytest.raises(RegistryError, match="it serves"):
        registry.start_canary("m", 1, 0.1, "the serving one")
    registry.apply(replace(base, version=4, status=Status.CANDIDATE, feature_types=["float"] * 3, event_id="v4"))
    with pytest.raises(RegistryError, match="another input"):
        registry.start_canary("m", 4, 0.1, "named fields")
    with pytest.raises(RegistryError, match="between 0 and 1"):
        base.with_status(Status.CANARY, "all", traffic=1.0)
    served = registry.promote("m", 2, "done")[-1]
    assert (served.status, served.traffic) == (Status.SERVING, 0.0)


def test_going_live_is_a_canary_at_the_first_step_or_serving_without_steps():
    registry = registry_with_canary()
    [canary] = go_live(registry, "m", 2, "gate passed", [0.1, 0.5])
    assert (canary.status, canary.traffic, canary.reason) == (Status.CANARY, 0.1, "canary at 10%: gate passed")
    assert [(r.version, r.status) for r in go_live(registry, "m", 2, "gate passed", [])] == [
        (1, Status.RETIRED), (2, Status.SERVING)]  # fmt: skip


def test_canary_steps_must_rise_between_0_and_1():
    assert TrainerSettings(canary_steps="0.05, 0.25").canary_shares == [0.05, 0.25]
    for bad in ("0.5,0.25", "0.1,1", "0,0.5", "a,b", "0.2,0.2"):
        with pytest.raises(ValueError, match="canary steps"):
            TrainerSettings(canary_steps=bad)


def test_a_decision_is_stale_when_a_serving_canary_or_shadow_version_changed_but_not_a_share():
    before = registry_with_canary()
    after = registry_with_canary()
    for record in after.start_canary("m", 2, 0.5, "ramped"):
        after.apply(record)
    assert moved(before, after, "m") == ""
    for record in after.promote("m", 2, "canary passed"):
        after.apply(record)
    assert moved(before, after, "m") == "serving version 1 → 2, canary version 2 → None"
    candidate = after.get("m", 2)
    stale = Decision(candidate, True, "gate passed", after.promote("m", 2, "gate passed")).stale(
        "serving version 1 → 2"
    )
    assert not stale.promoted and [(r.version, r.status) for r in stale.records] == [(2, Status.REJECTED)]
    assert stale.reason == "the registry moved during the training (serving version 1 → 2); gate passed"
