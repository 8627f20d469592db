import logging

import numpy as np
import torch

from loopline.models import TrainConfig, train_mlp
from loopline.models.datasets import Concept, sample
from loopline.models.train import accuracy


def test_training_learns_the_concept(trained):
    x, y = sample(Concept(seed=1, n_features=6), rows=2000, seed=9)
    with torch.inference_mode():
        assert accuracy(trained(torch.from_numpy(x)).numpy(), y) > 0.85


def test_the_same_seed_gives_the_same_weights(dataset):
    x, y = dataset
    config = TrainConfig(hidden=(8,), epochs=2, seed=3)
    a, b = train_mlp(x, y, 2, config), train_mlp(x, y, 2, config)
    for (name, left), right in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(left, right), name
    other = train_mlp(x, y, 2, TrainConfig(hidden=(8,), epochs=2, seed=4))
    assert not torch.equal(a.state_dict()["layers.0.weight"], other.state_dict()["layers.0.weight"])


def test_hyperparameters_round_trip_through_lineage_strings():
    config = TrainConfig(hidden=(32, 16, 8), epochs=7, learning_rate=0.01, seed=11)
    assert TrainConfig.from_strings(config.as_strings()) == config


def test_a_covariate_shift_moves_one_feature_only():
    concept = Concept(seed=1, n_features=4)
    base, _ = sample(concept, 5000, seed=1)
    moved, _ = sample(concept, 5000, seed=1, shift={2: 3.0})
    np.testing.assert_allclose(moved.mean(axis=0) - base.mean(axis=0), [0, 0, 3.0, 0], atol=1e-5)


def test_a_training_logs_one_line_at_info_and_its_epochs_at_debug(dataset, caplog):
    x, y = dataset
    with caplog.at_level(logging.DEBUG, logger="loopline.models.train"):
        train_mlp(x, y, 2, TrainConfig(hidden=(8,), epochs=3, min_steps=0))
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "loopline.models.train"]
    assert [message.split(" loss")[0] for level, message in lines if level == logging.DEBUG] == [
        "epoch 1/3", "epoch 2/3", "epoch 3/3"]  # fmt: skip
    info = [message for level, message in lines if level == logging.INFO]
    assert len(info) == 1 and info[0].startswith(f"trained an MLP 8 on {len(x)} rows, 3 epochs on cpu")
