"""Builders shared by tests: feature records, model versions."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from loopline.codec import Codec
from loopline.models import (
    ArtifactFormat,
    ArtifactStore,
    ModelVersion,
    Status,
    TabularMLP,
    TrainConfig,
    make_version,
    train_mlp,
)
from loopline.models.datasets import Concept, feature_names, sample
from loopline.models.export import to_onnx

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The checkout: docs, ops and compose files that the tests read."""
FEATURES = Codec.load("features")
N_FEATURES = 6


def features_record(values, event_id=None, event_time=1_795_000_000_000, entity_id="e"):
    return FEATURES.encode({
        "event_id": event_id or str(uuid.uuid4()), "event_time": event_time, "entity_id": entity_id,
        "values": list(values),
    })  # fmt: skip


def small_model(seed=0, concept_seed=1):
    x, y = sample(Concept(seed=concept_seed, n_features=N_FEATURES), rows=2000, seed=seed)
    return train_mlp(x, y, 2, TrainConfig(hidden=(8,), epochs=2, seed=seed))


def trained_model(concept_seed=1):
    """A model that has learned its concept (about 95% accurate), for tests where quality matters."""
    x, y = sample(Concept(seed=concept_seed, n_features=N_FEATURES), rows=4000, seed=0)
    return train_mlp(x, y, 2, TrainConfig(hidden=(32,), epochs=20, seed=0))


def nan_model():
    model = TabularMLP(N_FEATURES, 2, (8,))
    with torch.no_grad():
        model.layers[0].weight.fill_(float("nan"))
    return model


def version_of(model, number, store: ArtifactStore, status=Status.SERVING, name="m", fmt=ArtifactFormat.ONNX):
    return make_version(
        model, model_name=name, version=number, feature_names=feature_names(N_FEATURES), classes=["no", "yes"],
        store=store, artifact_format=fmt, status=status,
    )  # fmt: skip


def poisoned(model, limit=100.0) -> bytes:
    """The ONNX graph of ``model``, made to fail at run time (a Gather out of bounds, as a broken GPU
    kernel would) on any batch that holds a row whose first feature is above ``limit``; it passes
    the probe batch and serves every other row as ``model`` does."""
    proto = onnx.load_from_string(to_onnx(model))
    graph = proto.graph
    graph.node[-1].output[0] = "clean"
    graph.initializer.extend([
        numpy_helper.from_array(np.array([0], dtype=np.int64), "first"),
        numpy_helper.from_array(np.array(limit, dtype=np.float32), "limit"),
        numpy_helper.from_array(np.zeros((1, 1), dtype=np.float32), "table"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "column"),
    ])  # fmt: skip
    graph.node.extend([
        helper.make_node("Gather", ["features", "first"], ["x0"], axis=1),  # [batch, 1]
        helper.make_node("Greater", ["x0", "limit"], ["over"]),
        helper.make_node("Cast", ["over"], ["index"], to=TensorProto.INT64),  # 1 is outside the table
        helper.make_node("Gather", ["table", "index"], ["picked"], axis=0),  # [batch, 1, 1], zeros
        helper.make_node("Squeeze", ["picked", "column"], ["zero"]),
        helper.make_node("Add", ["clean", "zero"], ["probabilities"]),
    ])  # fmt: skip
    return proto.SerializeToString()


def tampered(version: ModelVersion) -> ModelVersion:
    """The same version whose inline artifact no longer matches its sha256."""
    assert version.artifact is not None
    return replace(version, artifact=version.artifact[:-1] + bytes([version.artifact[-1] ^ 1]))


def rows(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, N_FEATURES)).astype(np.float32)


def send_labeled_events(kafka, x, y, start, classes=("no", "yes")):
    """Feature events (10 ms of event time apart from number ``start`` on) and their labels a minute later."""
    from loopline.kafka.clients import send_all

    label = Codec.load("label")
    ids = [str(uuid.uuid4()) for _ in range(len(x))]
    times = [1_795_000_000_000 + (start + i) * 10 for i in range(len(x))]
    send_all(
        kafka, kafka.topic("features"), [(e, features_record(v, e, t)) for e, v, t in zip(ids, x, times, strict=True)]
    )
    labels = [(e, label.encode({"event_id": e, "event_time": t + 60_000, "label": classes[c]}))
              for e, c, t in zip(ids, y.tolist(), times, strict=True)]  # fmt: skip
    send_all(kafka, kafka.topic("labels"), labels)
    return ids


PENGUIN_NAMES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "island", "sex", "year"]
PENGUIN_TYPES = ["float?", "float?", "float?", "float?", "category", "category?", "int"]
PENGUIN_CLASSES = ["Adelie", "Chinstrap", "Gentoo"]


def penguins() -> tuple[list[dict[str, object]], list[str]]:
    """The Palmer penguins (palmerpenguins' copy of Gorman, Williams and Fraser's data): each bird's named
    fields as a feature event carries them (None where the data has none), and its species."""
    from palmerpenguins import load_penguins

    rows = []
    for bird in load_penguins().to_dict("records"):
        fields = {name: (None if bird[name] != bird[name] else bird[name]) for name in PENGUIN_NAMES}  # NaN: absent
        fields["year"] = int(fields["year"])
        rows.append(fields)
    return rows, [str(bird) for bird in load_penguins()["species"]]


def penguin_pipeline():
    """A scikit-learn pipeline of the kind a team brings: imputation, scaling, one-hot of the categories."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]
    return Pipeline([
        ("prepare", ColumnTransformer([
            ("numbers", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numbers),
            ("categories", Pipeline([("impute", SimpleImputer(strategy="constant", fill_value=-1.0)),
                                     ("one_hot", OneHotEncoder(handle_unknown="ignore"))]), ["island", "sex"]),
        ])),
        ("classify", LogisticRegression(max_iter=1000)),
    ])  # fmt: skip
