"""Scikit-learn pipelines as a family: a spec of the steps in the lineage, a new fit, one ONNX graph."""

import json

import numpy as np
import onnxruntime as ort
import pytest

from loopline.codec.typed import Vectoriser, parse_inputs
from loopline.models.pipelines import PipelineConfig, build, spec_of, train_pipeline
from tests.helpers import PENGUIN_CLASSES, PENGUIN_NAMES, PENGUIN_TYPES, penguin_pipeline, penguins


@pytest.fixture(scope="module")
def data():
    rows, species = penguins()
    vectorise = Vectoriser(parse_inputs(PENGUIN_NAMES, PENGUIN_TYPES))
    x = np.asarray([vectorise.row(fields) for fields in rows], dtype=np.float32)
    return x, np.asarray([PENGUIN_CLASSES.index(s) for s in species])


def config(seed=0):
    return PipelineConfig(json.dumps(spec_of(penguin_pipeline(), PENGUIN_NAMES)), seed)


def test_the_spec_holds_the_steps_with_column_names_as_indices_and_builds_nothing_but_scikit_learn():
    spec = spec_of(penguin_pipeline(), PENGUIN_NAMES)
    [numbers, categories] = spec["params"]["steps"][0][1]["params"]["transformers"]
    assert numbers[2] == [0, 1, 2, 3, 6] and categories[2] == [4, 5]
    rebuilt = build(json.loads(json.dumps(spec)))
    assert json.dumps(spec_of(rebuilt)) == json.dumps(spec)  # the same steps and parameters (NaN is no dict equal)
    spec["params"]["steps"][1][1]["class"] = "os.system"
    with pytest.raises(ValueError, match="outside scikit-learn"):
        build(spec)


def test_the_artifact_gives_the_pipeline_s_scores_with_preprocessing_and_missing_values_inside(data):
    x, y = data
    assert np.isnan(x).any()  # the data's own missing measurements and sexes
    model = train_pipeline(config(), x, y, 3)
    session = ort.InferenceSession(model.onnx(), providers=["CPUExecutionProvider"])
    scores = session.run(None, {"features": x})[0]
    np.testing.assert_allclose(scores, model.pipeline.predict_proba(x), atol=1e-5)
    assert (scores.argmax(1) == y).mean() > 0.95


def test_a_class_missing_from_the_rows_scores_zero_and_a_fit_is_reproduced(data):
    x, y = data
    seen = y != 2  # no Gentoo
    model = train_pipeline(config(), x[seen], y[seen], 3)
    scores = ort.InferenceSession(model.onnx(), providers=["CPUExecutionProvider"]).run(None, {"features": x})[0]
    assert scores.shape == (len(x), 3) and (scores[:, 2] == 0).all()
    np.testing.assert_allclose(scores, model.probabilities(x), atol=1e-5)
    assert train_pipeline(config(), x, y, 3).onnx() == train_pipeline(config(), x, y, 3).onnx()
