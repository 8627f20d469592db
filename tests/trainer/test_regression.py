"""Regression sets: read from CSV, applied by rule, and held by the trainer's promotions."""

import numpy as np
import pytest

from loopline.inference.loader import load_model
from loopline.models import ArtifactStore, Registry, Status
from loopline.models.datasets import Concept, sample
from loopline.settings import InferenceSettings, RegistrySettings, TrainerSettings
from loopline.trainer.core import Trainer
from loopline.trainer.regression import RegressionError, check, regression_set
from loopline.trainer.window import Window
from tests.helpers import N_FEATURES, trained_model, version_of

CLASSES = ["no", "yes"]
NAMES = [f"x{i}" for i in range(N_FEATURES)]


def write_set(directory, x, y, slices=None, model="m"):
    lines = [",".join([*NAMES, "label"] + (["slice"] if slices else []))]
    for i, (values, label) in enumerate(zip(x.tolist(), y.tolist(), strict=True)):
        lines.append(",".join([*map(str, values), CLASSES[label]] + ([slices[i]] if slices else [])))
    path = directory / f"{model}.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def served(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts", inline_limit=1 << 20)
    registry = Registry()
    registry.apply(version_of(trained_model(concept_seed=1), 1, store))
    return registry, store


def loaded(registry, store, number):
    return load_model(registry.get("m", number), InferenceSettings(device="cpu"), store, shadow=False,
                      expected_features=None)  # fmt: skip


def test_a_set_is_read_by_feature_name_and_a_broken_one_says_why(tmp_path, served):
    registry, _ = served
    version = registry.get("m", 1)
    assert regression_set(RegistrySettings(), version) is None  # no directory set
    settings = RegistrySettings(regression_dir=tmp_path)
    assert regression_set(settings, version) is None  # no file for the model
    x, y = sample(Concept(seed=1, n_features=N_FEATURES), 20, seed=1)
    write_set(tmp_path, x, y)
    cases = regression_set(settings, version)
    np.testing.assert_allclose(cases.x, x, rtol=1e-6)
    assert (cases.y == y).all()
    assert cases.slices == ["all"] * 20 and len(cases.sha256) == 64
    (tmp_path / "m.csv").write_text("x0,label\n1,yes\n")
    with pytest.raises(RegressionError, match="no column x1, x2, x3, x4, x5"):
        regression_set(settings, version)
    (tmp_path / "m.csv").write_text(",".join([*NAMES, "label"]) + "\n" + ",".join(["0"] * N_FEATURES + ["maybe"]))
    with pytest.raises(RegressionError, match="labels one of"):
        regression_set(settings, version)
    (tmp_path / "m.csv").write_text(",".join([*NAMES, "label"]) + "\n0,1\n")  # a short row
    with pytest.raises(RegressionError, match="labels one of"):
        regression_set(settings, version)
    (tmp_path / "m.csv").write_bytes(b"x0,label\n\xff\xfe,yes\n")
    with pytest.raises(RegressionError, match="can't be read as UTF-8 CSV"):
        regression_set(settings, version)


def test_no_loss_refuses_a_candidate_that_loses_a_case_the_serving_version_gets_right(tmp_path, served):
    registry, store = served
    registry.apply(version_of(trained_model(concept_seed=2), 2, store, Status.CANDIDATE))
    x, y = sample(Concept(seed=1, n_features=N_FEATURES), 60, seed=7)  # the serving version's world
    write_set(tmp_path, x, y, slices=["a", "b"] * 30)
    settings = RegistrySettings(regression_dir=tmp_path)
    cases = regression_set(settings, registry.get("m", 2))
    serving, candidate = loaded(registry, store, 1), loaded(registry, store, 2)
    verdict = check(cases, candidate, serving, settings)
    assert not verdict.passed and "cases version 1 gets right (rows " in verdict.figures
    assert check(cases, serving, serving, settings).passed  # the same version loses nothing
    slices = RegistrySettings(regression_dir=tmp_path, regression_rule="slices", regression_min_accuracy=0.9)
    assert check(cases, serving, None, slices).passed
    refused = check(cases, candidate, None, slices)
    assert not refused.passed and "slices below the floor of 0.900: a 0." in refused.figures


def test_a_candidate_better_on_recent_data_that_fails_the_set_is_rejected_with_the_figures(tmp_path, served):
    registry, store = served
    x, y = sample(Concept(seed=1, n_features=N_FEATURES), 60, seed=7)  # cases the team cares about
    write_set(tmp_path, x, y)
    recent_x, recent_y = sample(Concept(seed=2, n_features=N_FEATURES), 1000, seed=5)
    window = Window(recent_x, [CLASSES[c] for c in recent_y], [{"topic": "o", "partition": 0, "start": 0, "end": 999}])
    trainer = Trainer(TrainerSettings(device="cpu"), store, RegistrySettings(regression_dir=tmp_path),
                      InferenceSettings(device="cpu"))  # fmt: skip
    decision = trainer.retrain(registry, "m", window, "drift")
    assert not decision.promoted and decision.candidate.status == Status.REJECTED
    assert decision.reason.startswith("regression set failed: regression set m.csv")
    assert "gate passed" in decision.reason  # better on the recent outcomes, refused all the same
    assert decision.candidate.lineage["regression_set"]["cases"] == 60
    assert registry.serving("m").version == 1
