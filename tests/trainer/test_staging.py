"""Staging: a staged shadow version judged on the live outcomes of the events both versions served."""

from dataclasses import replace

import numpy as np

from loopline.models import ModelVersion, Registry, Status
from loopline.settings import TrainerSettings
from loopline.trainer.staging import STAGING_METRIC, Staging
from tests.samples import SAMPLES


def registry_with(needed):
    """Version 1 serving; version 2 in shadow, staged to be judged on ``needed`` pairs (0: put there by hand)."""
    registry = Registry()
    base = replace(ModelVersion.from_record(SAMPLES["model_version"]), model_name="m", version=1)
    registry.apply(base)
    metrics = {STAGING_METRIC: float(needed)} if needed else {}
    registry.apply(replace(base, version=2, status=Status.SHADOW, metrics=metrics, event_id="v2"))
    return registry


def outcome(event, version, shadow, correct):
    return SAMPLES["outcome"] | {"model_name": "m", "event_id": event, "model_version": version, "shadow": shadow,
                                 "correct": correct}  # fmt: skip


def judged(serving_right, staged_right, needed=400):
    """The verdicts on the outcomes of the serving version 1 and the staged version 2 on the same events,
    the halves of each pair in alternating order."""
    registry = registry_with(needed)
    staging = Staging(TrainerSettings(), registry.get)
    verdicts = []
    for i, (serving, staged) in enumerate(zip(serving_right, staged_right, strict=True)):
        halves = [outcome(f"e{i}", 1, False, bool(serving)), outcome(f"e{i}", 2, True, bool(staged))]
        for half in halves if i % 2 else reversed(halves):
            verdicts += [v for v in [staging.add(half)] if v is not None]
    return verdicts


def test_a_staged_version_better_on_the_same_events_is_promoted_once_with_the_figures():
    rng = np.random.default_rng(0)
    serving, staged = rng.random(600) < 0.70, rng.random(600) < 0.85
    [verdict] = judged(serving, staged)
    assert verdict.passed and (verdict.model_name, verdict.version) == ("m", 2)
    assert "live, on the same events: held-out accuracy" in verdict.figures and "on 400 outcomes" in verdict.figures


def test_a_staged_version_no_better_than_the_noise_is_rejected():
    rng = np.random.default_rng(1)
    serving = rng.random(500) < 0.8
    [worse] = judged(serving, rng.random(500) < 0.6)
    [same] = judged(serving, serving)
    assert not worse.passed and not same.passed and "not more than" in same.figures


def test_a_shadow_put_there_by_hand_is_never_judged_and_unpaired_outcomes_count_nothing():
    rng = np.random.default_rng(2)
    assert judged(rng.random(600) < 0.5, rng.random(600) < 0.9, needed=0) == []
    registry = registry_with(10)
    staging = Staging(TrainerSettings(), registry.get)
    for i in range(50):  # each version on other events: no pair
        assert staging.add(outcome(f"a{i}", 1, False, False)) is None
        assert staging.add(outcome(f"b{i}", 2, True, True)) is None


def test_an_outcome_read_twice_counts_once():
    registry = registry_with(3)
    staging = Staging(TrainerSettings(), registry.get)
    halves = [outcome("e0", 1, False, False), outcome("e0", 2, True, True)]
    for half in halves * 3:  # at-least-once: the same pair read three times
        assert staging.add(half) is None
    verdicts = [staging.add(half) for i in (1, 2) for half in (outcome(f"e{i}", 1, False, False),
                                                            outcome(f"e{i}", 2, True, True))]  # fmt: skip
    [verdict] = [v for v in verdicts if v is not None]
    assert "on 3 outcomes" in verdict.figures
