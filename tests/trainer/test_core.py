"""The trainer core and the rollback guard, without a broker."""

import numpy as np
import pytest

from models import ArtifactStore, Registry, Status
from models.datasets import Concept, sample
from streams.settings import TrainerSettings
from streams.trainer.core import Refused, Trainer
from streams.trainer.guard import RollbackGuard
from streams.trainer.window import Window
from tests.helpers import N_FEATURES, trained_model, version_of

CLASSES = ["no", "yes"]
RANGES = [{"topic": "o", "partition": 0, "start": 0, "end": 1999}]


@pytest.fixture
def registry(tmp_path):
    store = ArtifactStore(tmp_path, inline_limit=1 << 20)
    registry = Registry()
    registry.apply(version_of(trained_model(concept_seed=1), 1, store))
    return registry, store


def window(concept_seed, rows=2000, seed=5):
    x, y = sample(Concept(seed=concept_seed, n_features=N_FEATURES), rows, seed=seed)
    return Window(x, [CLASSES[c] for c in y], RANGES)


def trainer(store, **settings):
    return Trainer(TrainerSettings(**({"device": "cpu"} | settings)), store)


def test_a_candidate_for_the_new_concept_passes_the_gate_and_replaces_the_serving_version(registry):
    registry, store = registry
    decision = trainer(store).retrain(registry, "m", window(concept_seed=2), "concept drift")
    assert decision.promoted and decision.candidate.version == 2
    assert [(r.version, r.status) for r in decision.records] == [(1, Status.RETIRED), (2, Status.SERVING)]
    metrics, lineage = decision.candidate.metrics, decision.candidate.lineage
    assert metrics["holdout_accuracy"] > 0.8 > 0.7 > metrics["serving_holdout_accuracy"]
    assert metrics["train_rows"] == 1600 and metrics["holdout_rows"] == 400
    assert lineage["parent_version"] == 1 and lineage["data"] == RANGES and lineage["seed"] == 0
    assert lineage["device"] == "cpu" and "torch" in lineage["packages"] and lineage["duration_ms"] >= 0
    assert {f"reference_mean.x{i}" for i in range(N_FEATURES)} <= set(metrics)
    assert "gate passed" in decision.reason and "concept drift" in decision.reason


def test_a_candidate_that_is_not_better_by_the_margin_is_rejected_with_the_figures(registry):
    registry, store = registry
    decision = trainer(store, min_improvement=0.05).retrain(registry, "m", window(concept_seed=1), "by hand")
    assert not decision.promoted
    assert [(r.version, r.status) for r in decision.records] == [(2, Status.REJECTED)]
    assert "gate failed" in decision.reason and "held-out accuracy" in decision.reason
    assert registry.serving("m").version == 1


def test_too_few_outcomes_and_unknown_models_are_refused_with_a_reason(registry):
    registry, store = registry
    with pytest.raises(Refused) as few:
        trainer(store, min_events=500).retrain(registry, "m", window(2, rows=100), "drift")
    assert few.value.reason == "too-few-outcomes" and "100 labeled outcomes" in str(few.value)
    with pytest.raises(Refused) as unknown:
        trainer(store).retrain(registry, "nope", window(2), "drift")
    assert unknown.value.reason == "unknown-model"


def test_the_same_window_and_seed_give_the_same_weights(registry):
    registry, store = registry
    first = trainer(store).retrain(registry, "m", window(2), "a").candidate
    second = trainer(store).retrain(registry, "m", window(2), "b").candidate
    assert first.sha256 == second.sha256


def outcome(version, correct):
    return {"model_name": "m", "model_version": version, "shadow": False, "correct": correct}


def test_the_guard_rolls_back_a_version_worse_than_its_predecessor(registry):
    registry, store = registry
    bad = version_of(trained_model(concept_seed=2), 2, store)
    registry.apply(type(bad)(**(vars(bad) | {"lineage": bad.lineage | {"parent_version": 1}})))
    guard = RollbackGuard(100, 0.05, lambda m, v: registry.get(m, v))
    rng = np.random.default_rng(0)
    assert [guard.add(outcome(1, c), 0) for c in rng.random(300) < 0.9] == [None] * 300
    verdicts = [guard.add(outcome(2, c), 0) for c in rng.random(300) < 0.6]
    found = [v for v in verdicts if v is not None]
    assert len(found) == 1 and verdicts.index(found[0]) == 99
    assert (found[0].version, found[0].predecessor) == (2, 1)
    assert found[0].accuracy < found[0].predecessor_accuracy - 0.05


def test_the_guard_keeps_a_version_that_does_as_well(registry):
    registry, store = registry
    good = version_of(trained_model(concept_seed=1), 2, store)
    registry.apply(type(good)(**(vars(good) | {"lineage": good.lineage | {"parent_version": 1}})))
    guard = RollbackGuard(100, 0.05, lambda m, v: registry.get(m, v))
    rng = np.random.default_rng(1)
    results = [guard.add(outcome(1, c), 0) for c in rng.random(200) < 0.9]
    results += [guard.add(outcome(2, c), 0) for c in rng.random(500) < 0.9]
    assert set(results) == {None}
