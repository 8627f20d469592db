import numpy as np
import pytest

from loopline.models import ArtifactStore, TrainConfig, train_mlp
from loopline.models.datasets import Concept, sample


@pytest.fixture(scope="session")
def dataset():
    return sample(Concept(seed=1, n_features=6), rows=3000, seed=2)


@pytest.fixture(scope="session")
def trained(dataset):
    x, y = dataset
    return train_mlp(x, y, 2, TrainConfig(hidden=(16, 8), epochs=4, seed=0))


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(tmp_path / "artifacts", inline_limit=1 << 20)


@pytest.fixture(scope="session")
def probe():
    return np.random.default_rng(5).normal(size=(257, 6)).astype(np.float32)
