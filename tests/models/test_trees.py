"""Boosted trees: trained deterministically, and served by ONNX Runtime with scikit-learn's probabilities."""

import numpy as np
import pytest

from loopline.models import ArtifactFormat, ArtifactStore, TrainConfig, TreesConfig, load_backend, make_version
from loopline.models.families import config_from_strings, fit
from loopline.models.trees import train_trees, trees_to_onnx


def rows(n, seed):
    """Five normal features and a category code 0..4 stored as a number."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x[:, 5] = rng.integers(0, 5, n)
    return x


def at_the_thresholds(model, base):
    """Rows of ``base`` with one split feature set to the float32 at or below each split threshold and
    to the next float32 above it: where a threshold rounded to float32 the wrong way goes astray."""
    probes = []
    for trees in model.estimator._predictors[:5]:
        for node in trees[0].nodes:
            if not node["is_leaf"]:
                below = np.float32(node["num_threshold"])
                below = below if below <= node["num_threshold"] else np.nextafter(below, np.float32(-np.inf))
                for value in (below, np.nextafter(below, np.float32(np.inf))):
                    row = base[len(probes) % len(base)].copy()
                    row[node["feature_idx"]] = value
                    probes.append(row)
    return np.asarray(probes, dtype=np.float32).reshape(-1, base.shape[1])


@pytest.mark.parametrize("n_classes, seen", [(2, [0, 1]), (4, [0, 2, 3]), (3, [0, 2]), (3, [1])])
def test_the_onnx_graph_serves_scikit_learns_probabilities_in_the_models_class_columns(n_classes, seen):
    x = rows(3000, seed=0)
    buckets = (x[:, 0] > 0.2).astype(int) + (x[:, 5] >= 3) + (x[:, 1] * x[:, 2] > 0)
    model = train_trees(x, np.asarray(seen)[buckets % len(seen)], n_classes, TreesConfig(max_iter=30))
    probe = np.concatenate([rows(500, seed=1), at_the_thresholds(model, rows(50, seed=2))])
    backend = load_backend(trees_to_onnx(model), ArtifactFormat.ONNX, n_features=6, n_classes=n_classes,
                           backend="onnxruntime", device="cpu")  # fmt: skip
    served, expected = backend.predict(probe), model.probabilities(probe)
    assert served.shape == (len(probe), n_classes)
    np.testing.assert_allclose(served, expected, atol=1e-5)
    assert (served.argmax(axis=1) == expected.argmax(axis=1)).all()
    assert (served[:, sorted(set(range(n_classes)) - set(seen))] == 0).all()


def test_the_same_rows_and_config_give_the_same_bytes():
    x = rows(2000, seed=3)
    y = (x[:, 0] + x[:, 5] > 2).astype(np.int64)
    first, second = (trees_to_onnx(train_trees(x, y, 2, TreesConfig(max_iter=20))) for _ in range(2))
    assert first == second


def test_a_lineage_names_its_family_and_one_without_is_an_mlps():
    trees = TreesConfig(max_iter=7, min_samples_leaf=3, seed=4)
    assert trees.as_strings()["family"] == "trees" and config_from_strings(trees.as_strings()) == trees
    assert config_from_strings(TrainConfig(hidden=(5,)).as_strings()) == TrainConfig(hidden=(5,))
    legacy = {k: v for k, v in TrainConfig(epochs=3).as_strings().items() if k != "family"}
    assert config_from_strings(legacy) == TrainConfig(epochs=3)
    with pytest.raises(ValueError, match="unknown model family 'forest'"):
        config_from_strings({"family": "forest"})


def test_trees_are_versions_in_onnx_only(tmp_path):
    x = rows(500, seed=4)
    model = fit(TreesConfig(max_iter=5), x, (x[:, 0] > 0).astype(np.int64), 2)
    store = ArtifactStore(tmp_path, inline_limit=1 << 20)
    names, classes = [f"x{i}" for i in range(6)], ["no", "yes"]
    version = make_version(model, model_name="m", version=1, feature_names=names, classes=classes, store=store)
    assert version.artifact_format == ArtifactFormat.ONNX and store.fetch(version) == trees_to_onnx(model)
    with pytest.raises(ValueError, match="ONNX only"):
        make_version(model, model_name="m", version=2, feature_names=names, classes=classes, store=store,
                     artifact_format=ArtifactFormat.TORCH)  # fmt: skip
