"""A team's own training code, found by its entry point, used by the trainer and recorded in the lineage."""

import pytest

from loopline.models import ArtifactStore, Registry
from loopline.models.datasets import Concept, sample
from loopline.models.families import config_from_strings, fit, onnx_bytes
from loopline.models.plugins import PluginConfig, PluginModel, plugin_names, provider
from loopline.settings import InferenceSettings, RegistrySettings, TrainerSettings
from loopline.trainer.core import Trainer
from loopline.trainer.window import Window
from tests.helpers import N_FEATURES, trained_model, version_of


@pytest.fixture
def acme(tmp_path, monkeypatch):
    """An installed distribution ``acme-trainer`` 1.0 whose entry point names ``tests.plugin_trainer:train``."""
    info = tmp_path / "acme_trainer-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-trainer\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[loopline.trainers]\nacme = tests.plugin_trainer:train\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "acme"


def test_a_family_is_found_by_its_entry_point_and_trains_through_it(acme):
    assert acme in plugin_names() and provider(acme) == {"acme-trainer": "1.0"}
    config = config_from_strings({"family": "acme", "sharpness": "2.0", "seed": "3"})
    assert config == PluginConfig("acme", (("sharpness", "2.0"),), 3) and config.as_strings()["sharpness"] == "2.0"
    x, y = sample(Concept(seed=1, n_features=N_FEATURES), 600, seed=1)
    model = fit(config, x, y, 2)
    assert isinstance(model, PluginModel) and onnx_bytes(model) == fit(config, x, y, 2).data  # the same bytes again
    assert model.probabilities(x).shape == (600, 2)
    with pytest.raises(ValueError, match="unknown model family 'nobody'"):
        config_from_strings({"family": "nobody"})


def test_the_trainer_trains_a_plug_in_family_and_records_it_in_the_lineage(acme, tmp_path):
    store = ArtifactStore(tmp_path / "artifacts", inline_limit=1 << 20)
    registry = Registry()
    registry.apply(version_of(trained_model(concept_seed=1), 1, store))
    x, y = sample(Concept(seed=2, n_features=N_FEATURES), 2000, seed=5)
    window = Window(x, [["no", "yes"][c] for c in y], [{"topic": "o", "partition": 0, "start": 0, "end": 1999}])
    trainer = Trainer(TrainerSettings(device="cpu", families="acme"), store, RegistrySettings(),
                      InferenceSettings(device="cpu"))  # fmt: skip
    decision = trainer.retrain(registry, "m", window, "drift")
    lineage = decision.candidate.lineage
    assert lineage["hyperparameters"] == {"family": "acme", "seed": "0"}
    assert lineage["packages"]["acme-trainer"] == "1.0"
    assert decision.candidate.metrics["holdout_accuracy"] > 0.6  # it learned something, through the checks
    first, rows = int(decision.candidate.metrics["train_start_row"]), int(decision.candidate.metrics["train_rows"])
    again = fit(config_from_strings(lineage["hyperparameters"]), x[first : first + rows], y[first : first + rows], 2)
    assert store.fetch(decision.candidate) == onnx_bytes(again)  # what `models reproduce` compares
