"""The trainer core and the rollback guard, without a broker."""

from dataclasses import replace

import numpy as np
import pytest

from loopline.models import ArtifactStore, Registry, Status, TrainConfig, TreesConfig
from loopline.models.datasets import Concept, sample
from loopline.settings import InferenceSettings, RegistrySettings, TrainerSettings
from loopline.trainer.core import Refused, Trainer, training_config
from loopline.trainer.gate import gate
from loopline.trainer.guard import RollbackGuard
from loopline.trainer.requests import answered, data_start
from loopline.trainer.window import Window
from tests.helpers import N_FEATURES, trained_model, version_of

CLASSES = ["no", "yes"]
RANGES = [{"topic": "o", "partition": 0, "start": 0, "end": 999}]


@pytest.fixture
def registry(tmp_path):
    store = ArtifactStore(tmp_path, inline_limit=1 << 20)
    registry = Registry()
    registry.apply(version_of(trained_model(concept_seed=1), 1, store))
    return registry, store


def window(concept_seed, rows=1000, seed=5):
    """Outcomes of a concept; 1,000 rows leave 160 validation rows, too few for a choice of family."""
    x, y = sample(Concept(seed=concept_seed, n_features=N_FEATURES), rows, seed=seed)
    return Window(x, [CLASSES[c] for c in y], RANGES)


def trainer(store, registry_settings=None, **settings):
    return Trainer(TrainerSettings(**({"device": "cpu"} | settings)), store, registry_settings or RegistrySettings(),
                   InferenceSettings(device="cpu"))  # fmt: skip


def test_a_candidate_for_the_new_concept_passes_the_gate_and_replaces_the_serving_version(registry):
    registry, store = registry
    decision = trainer(store).retrain(registry, "m", window(concept_seed=2), "concept drift")
    assert decision.promoted and decision.candidate.version == 2
    assert [(r.version, r.status) for r in decision.records] == [(1, Status.RETIRED), (2, Status.SERVING)]
    metrics, lineage = decision.candidate.metrics, decision.candidate.lineage
    assert metrics["holdout_accuracy"] > 0.8 > 0.7 > metrics["serving_holdout_accuracy"]
    assert metrics["train_rows"] == 800 and metrics["holdout_rows"] == 200
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


def test_a_tie_never_passes_the_gate_and_the_noise_of_the_difference_counts():
    settings = TrainerSettings()
    same = np.random.default_rng(0).random(400) < 0.7
    assert not gate(same, same, settings).passed  # a byte-identical model scores alike: +0, no noise
    assert not gate(same, same, TrainerSettings(gate_standard_errors=0)).passed
    # 0.60 against 0.55, disagreeing on a quarter of the outcomes: noise on 100 outcomes, not on 5,000.
    for n, passes in ((100, False), (5000, True)):
        slot = np.arange(n) % 20
        serving, candidate = slot <= 10, (slot >= 2) & (slot <= 13)
        verdict = gate(candidate, serving, settings)
        assert (verdict.candidate, verdict.serving) == pytest.approx((0.60, 0.55)), n
        assert verdict.passed is passes, verdict.figures
        assert "standard errors" in verdict.figures


def test_the_floor_holds_whatever_the_serving_version_does():
    candidate, serving = np.arange(1000) % 100 < 85, np.arange(1000) % 100 < 50
    assert gate(candidate, serving, TrainerSettings()).passed
    verdict = gate(candidate, serving, TrainerSettings(min_accuracy=0.9))
    assert not verdict.passed and "below the floor of 0.9000" in verdict.figures


def test_a_serving_version_that_still_does_as_well_needs_no_new_version(tmp_path):
    store = ArtifactStore(tmp_path, inline_limit=1 << 20)
    registry = Registry()
    version = version_of(trained_model(concept_seed=1), 1, store)
    registry.apply(replace(version, metrics={"holdout_accuracy": 0.96}))  # as when it was trained
    decision = trainer(store).retrain(registry, "m", window(concept_seed=1), "covariate drift on x3")
    assert not decision.promoted
    assert "no new version is needed" in decision.reason and "covariate drift on x3" in decision.reason


def test_too_few_outcomes_and_unknown_models_are_refused_with_a_reason(registry):
    registry, store = registry
    with pytest.raises(Refused) as few:
        trainer(store, min_events=500).retrain(registry, "m", window(2, rows=100), "drift")
    assert few.value.reason == "too-few-outcomes" and "100 labeled outcomes" in str(few.value)
    with pytest.raises(Refused) as unknown:
        trainer(store).retrain(registry, "nope", window(2), "drift")
    assert unknown.value.reason == "unknown-model"


def test_a_retrain_trains_the_family_that_does_best_on_the_newest_training_rows(registry):
    registry, store = registry
    x = np.random.default_rng(5).normal(size=(2000, N_FEATURES)).astype(np.float32)
    oblique = (x.sum(axis=1) > 0).astype(int)  # one slanted boundary: a straight line for the MLP
    steps = (((x[:, 0] > 0.3) & (x[:, 2] < -0.5)) | (x[:, 4] > 1.0)).astype(int)  # thresholds: a tree
    smooth, stepped = (trainer(store).retrain(registry, "m", Window(x, [CLASSES[c] for c in y], RANGES), "drift")
                       .candidate for y in (oblique, steps))  # fmt: skip
    for version, family, other in ((smooth, "mlp", "trees"), (stepped, "trees", "mlp")):
        assert version.lineage["hyperparameters"]["family"] == family, version.reason
        assert version.metrics[f"validation_accuracy.{family}"] > version.metrics[f"validation_accuracy.{other}"]
        assert f"{family} chosen: validation accuracy" in version.reason and "newest 320 training" in version.reason
    few = trainer(store).retrain(registry, "m", Window(x[:600], [CLASSES[c] for c in steps[:600]], RANGES), "d")
    assert "chosen" not in few.reason and few.candidate.lineage["hyperparameters"]["family"] == "mlp"  # 96 rows: noise
    only = trainer(store, families="mlp").retrain(registry, "m", Window(x, [CLASSES[c] for c in steps], RANGES), "d")
    assert only.candidate.lineage["hyperparameters"]["family"] == "mlp" and "trees" not in only.reason
    assert set(only.candidate.metrics) >= {"validation_accuracy.mlp", "validation_accuracy.mlp.newest_half"}


def test_after_a_gradual_drift_the_newest_half_of_the_rows_is_chosen_when_it_does_better(registry):
    registry, store = registry
    x = np.random.default_rng(6).normal(size=(2000, N_FEATURES)).astype(np.float32)
    new = (x[:, 1] > 0).astype(int)
    labels = np.where(np.arange(2000) < 800, 1 - new, new)  # the older 800 rows: the old world, the opposite
    decision = trainer(store, families="trees").retrain(registry, "m", Window(x, [CLASSES[c] for c in labels],
                                                                               RANGES), "gradual")  # fmt: skip
    metrics = decision.candidate.metrics
    assert "trees on the newest half chosen" in decision.reason, decision.reason
    assert metrics["validation_accuracy.trees.newest_half"] > metrics["validation_accuracy.trees"]
    assert (metrics["train_start_row"], metrics["train_rows"]) == (800, 800)  # the newest half of 1,600
    assert decision.promoted and metrics["holdout_accuracy"] > 0.95


def test_a_family_keeps_the_serving_versions_hyper_parameters_and_takes_the_defaults_of_another(registry):
    registry, _ = registry
    serving = registry.serving("m")
    trees = replace(serving, lineage=serving.lineage | {"hyperparameters": TreesConfig(max_iter=7).as_strings()})
    assert training_config(trees, 3, "trees") == TreesConfig(max_iter=7, seed=3)
    assert training_config(trees, 3, "mlp") == TrainConfig(seed=3)
    assert training_config(serving, 3, "mlp") == TrainConfig(hidden=(32,), seed=3)  # recorded before families
    assert training_config(serving, 3, "trees") == TreesConfig(seed=3)


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


def request(at_ms, since=None, evidence_end=None):
    evidence = None if evidence_end is None else {"offsets": [{"topic": "o", "partition": 1, "start": 0,
                                                                "end": evidence_end}]}  # fmt: skip
    return {"event_time": at_ms, "since": since, "evidence": evidence}


def test_a_request_is_answered_only_by_a_training_that_read_after_it():
    assert not answered(0, 10, None)  # no training yet
    assert answered(0, 10, {0: 11, 1: 3})  # partition 0 ended at 11 when the window was read: written before
    assert not answered(0, 11, {0: 11}) and not answered(0, 12, {0: 11})  # written after: it needs its own
    assert not answered(1, 0, {0: 11})  # a partition that had nothing then


def test_training_data_starts_where_the_requests_say_the_newest_world_begins():
    assert data_start([request(1)], "o") == {}  # by hand, no since: the most recent window
    assert data_start([request(1, evidence_end=99)], "o") == {1: 100}  # after the detection
    since = [{"topic": "o", "partition": 1, "offset": 40}, {"topic": "other", "partition": 0, "offset": 7}]
    assert data_start([request(1, since=since, evidence_end=99)], "o") == {1: 40}  # since says it
    assert data_start([request(1, evidence_end=99), request(2, since=since)], "o") == {1: 100}  # the latest


def test_with_staging_a_candidate_that_passes_the_gate_runs_in_shadow_and_a_newer_one_supersedes_it(registry):
    registry, store = registry
    first = trainer(store, staging_outcomes=300).retrain(registry, "m", window(concept_seed=2), "drift")
    assert not first.promoted and [(r.version, r.status) for r in first.records] == [(2, Status.SHADOW)]
    assert first.candidate.metrics["staging_outcomes"] == 300 and first.reason.startswith("staged: gate passed")
    registry.apply(first.candidate)
    second = trainer(store, staging_outcomes=300).retrain(registry, "m", window(concept_seed=2, seed=6), "again")
    assert [(r.version, r.status) for r in second.records] == [(2, Status.REJECTED), (3, Status.SHADOW)]
    assert "superseded by version 3" in second.records[0].reason
    assert registry.serving("m").version == 1  # nothing serves before the live verdict


def test_with_canary_steps_a_candidate_that_passes_the_gate_serves_the_first_share_as_a_canary(registry):
    registry, store = registry
    decision = trainer(store, canary_steps="0.1,0.5").retrain(registry, "m", window(concept_seed=2), "drift")
    [canary] = decision.records
    assert not decision.promoted and (canary.version, canary.status, canary.traffic) == (2, Status.CANARY, 0.1)
    assert canary.reason.startswith("canary at 10%: gate passed")


def test_a_pipeline_version_with_typed_inputs_is_retrained_as_the_same_pipeline_and_a_model_file_is_not(tmp_path):
    import json

    from loopline.codec.typed import Vectoriser, parse_inputs
    from loopline.models import bootstrap_version
    from loopline.models.pipelines import PipelineConfig, spec_of
    from tests.helpers import PENGUIN_CLASSES, PENGUIN_NAMES, PENGUIN_TYPES, penguin_pipeline, penguins

    rows, species = penguins()
    vectorise = Vectoriser(parse_inputs(PENGUIN_NAMES, PENGUIN_TYPES))
    x = np.asarray([vectorise.row(fields) for fields in rows], dtype=np.float32)
    y = np.asarray([PENGUIN_CLASSES.index(s) for s in species])
    store = ArtifactStore(tmp_path, inline_limit=1 << 20)
    spec = json.dumps(spec_of(penguin_pipeline(), PENGUIN_NAMES))
    no_gentoo = y != 2  # the first version never saw a Gentoo
    first = bootstrap_version(x[no_gentoo], y[no_gentoo], model_name="p", feature_names=PENGUIN_NAMES,
                              feature_types=PENGUIN_TYPES, classes=PENGUIN_CLASSES, store=store,
                              config=PipelineConfig(spec))  # fmt: skip
    registry = Registry()
    registry.apply(replace(first, status=Status.SERVING))
    order = np.random.default_rng(0).permutation(len(y))
    recent = Window(x[order], [species[i] for i in order], RANGES)
    decision = trainer(store, min_events=100).retrain(registry, "p", recent, "drift")
    candidate = decision.candidate
    assert decision.promoted and candidate.lineage["hyperparameters"]["family"] == "sklearn"
    assert candidate.lineage["hyperparameters"]["pipeline"] == spec  # the same steps, fitted anew
    assert candidate.feature_types == PENGUIN_TYPES and candidate.metrics["holdout_accuracy"] > 0.95
    opaque = replace(candidate, version=3, lineage=candidate.lineage | {"hyperparameters": {"family": "file"}})
    registry.apply(replace(opaque, status=Status.SERVING, event_id="v3"))
    with pytest.raises(Refused, match="without its training code"):
        trainer(store, min_events=100).retrain(registry, "p", recent, "drift")
