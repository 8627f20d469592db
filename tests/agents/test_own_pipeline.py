"""A team's own scikit-learn pipeline on a dataset a package ships (the Palmer penguins: categories,
missing values), through the whole loop: register, serve named fields, drift, retrain of the same
pipeline, gated promotion."""

import json

import numpy as np

from loopline.codec import Codec
from loopline.codec.typed import Vectoriser, parse_inputs
from loopline.kafka.clients import send_all
from loopline.kafka.topics import create_topics
from loopline.kafka.versions import load_registry, publish_versions
from loopline.models import ArtifactStore, Status, bootstrap_version
from loopline.models.pipelines import PipelineConfig, spec_of
from tests.helpers import PENGUIN_CLASSES, PENGUIN_NAMES, PENGUIN_TYPES, penguin_pipeline, penguins
from tests.workers import decoded, wait_for, worker

FEATURES, LABEL = Codec.load("features"), Codec.load("label")
T0 = 1_795_000_000_000


def send(kafka, birds, first):
    """Feature events with the birds' named fields, each followed by its label; event ids from ``first``."""
    features, labels = [], []
    for i, (fields, species) in enumerate(birds, start=first):
        event = f"bird-{i}"
        features.append((event, FEATURES.encode({"event_id": event, "event_time": T0 + i, "entity_id": f"b{i % 50}",
                                                 "values": [], "fields": fields})))  # fmt: skip
        labels.append((event, LABEL.encode({"event_id": event, "event_time": T0 + i, "label": species})))
    send_all(kafka, kafka.topic("features"), features)
    send_all(kafka, kafka.topic("labels"), labels)


def test_a_pipeline_on_named_fields_with_missing_values_is_served_retrained_as_itself_and_promoted(kafka, tmp_path):
    create_topics(kafka)
    rows, species = penguins()
    vectorise = Vectoriser(parse_inputs(PENGUIN_NAMES, PENGUIN_TYPES))
    x = np.asarray([vectorise.row(fields) for fields in rows], dtype=np.float32)
    y = np.asarray([PENGUIN_CLASSES.index(s) for s in species])
    known = y != 2  # the first version is trained before any Gentoo was seen
    spec = json.dumps(spec_of(penguin_pipeline(), PENGUIN_NAMES))
    store = ArtifactStore(tmp_path / "artifacts", 1 << 20)
    first = bootstrap_version(x[known], y[known], model_name="penguins", feature_names=PENGUIN_NAMES,
                              feature_types=PENGUIN_TYPES, classes=PENGUIN_CLASSES, store=store,
                              config=PipelineConfig(spec))  # fmt: skip
    publish_versions(kafka, [first, first.with_status(Status.SERVING, "the team's pipeline")])
    env = {"LOOPLINE_INFERENCE_MODEL_NAME": "penguins", "LOOPLINE_REGISTRY_ARTIFACT_DIR": str(tmp_path / "artifacts"),
           "LOOPLINE_TRAINER_MIN_EVENTS": "150", "LOOPLINE_TRAINER_DEVICE": "cpu",
           "LOOPLINE_DRIFT_MIN_SAMPLES": "150"}  # 220 birds come before the drift  # fmt: skip
    order = np.random.default_rng(0).permutation(len(rows))
    before = [(rows[i], species[i]) for i in order if known[i]]
    after = [(rows[i], species[i]) for _ in range(3) for i in order]  # Gentoos arrive: a third of the birds
    with (worker("inference", kafka, tmp_path, **env), worker("join", kafka, tmp_path, **env),
          worker("drift", kafka, tmp_path, **env), worker("trainer", kafka, tmp_path, **env)):  # fmt: skip
        send(kafka, before, 0)
        send_all(kafka, kafka.topic("features"), [(b"bad-1", FEATURES.encode({
            "event_id": "bad-1", "event_time": T0, "entity_id": "b", "values": [],
            "fields": rows[0] | {"island": None}})), (b"bad-2", FEATURES.encode({
            "event_id": "bad-2", "event_time": T0, "entity_id": "b", "values": [],
            "fields": rows[0] | {"year": "2007"}}))])  # fmt: skip
        send(kafka, after, len(before))
        wait_for(lambda: (lambda v: v is not None and v.version > 1)(load_registry(kafka).serving("penguins")),
                 timeout_s=120, what="a retrained version to serve")  # fmt: skip
    registry = load_registry(kafka)
    served = registry.serving("penguins")
    assert served.lineage["hyperparameters"]["family"] == "sklearn"
    assert served.lineage["hyperparameters"]["pipeline"] == spec  # the team's steps, fitted to the new birds
    assert served.feature_types == PENGUIN_TYPES and "gate passed" in served.reason
    assert any(e["model_name"] == "penguins" for e in decoded(kafka, "drift-events", "drift_event"))
    predicted = {p["event_id"] for p in decoded(kafka, "predictions", "prediction")}
    missing = [i for i, (fields, _) in enumerate(before + after) if None in fields.values()]
    assert missing and {f"bird-{i}" for i in missing} <= predicted  # served with their missing values
    letters = {d["key"]: (d["reason"], d["error"]) for d in decoded(kafka, "dead-letters", "dead_letter")}
    assert letters[b"bad-1"][0] == "missing-field" and "'island'" in letters[b"bad-1"][1]
    assert letters[b"bad-2"][0] == "wrong-type" and "'year'" in letters[b"bad-2"][1]
