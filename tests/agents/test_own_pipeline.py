"""A team's own scikit-learn pipeline on a dataset a package ships (the Palmer penguins: categories,
missing values), through the whole loop with loopline's public API: register, serve named fields,
drift, retrain of the same pipeline, gated promotion."""

import numpy as np
from confluent_kafka import Producer

from loopline import ArtifactStore, Status, bootstrap_version, encode_features, encode_label, load_registry, publish
from loopline.kafka.topics import create_topics
from tests.helpers import PENGUIN_CLASSES, PENGUIN_NAMES, PENGUIN_TYPES, penguin_pipeline, penguins
from tests.workers import decoded, wait_for, worker

T0 = 1_795_000_000_000


def produce(kafka, topic, records):
    """Send (key, value) records as a producer of the team's would, and wait until they are acknowledged."""
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "partitioner": "murmur2_random"})
    for key, value in records:
        producer.produce(kafka.topic(topic), key=key, value=value)
        producer.poll(0)
    assert producer.flush(30) == 0


def send(kafka, birds, first):
    """Feature events with the birds' named fields, each followed by its label; event ids from ``first``."""
    features, labels = [], []
    for i, (fields, species) in enumerate(birds, start=first):
        event = f"bird-{i}"
        features.append((event, encode_features(event, f"b{i % 50}", fields=fields, event_time=T0 + i)))
        labels.append((event, encode_label(event, species, event_time=T0 + i)))
    produce(kafka, "features", features)
    produce(kafka, "labels", labels)


def test_a_pipeline_on_named_fields_with_missing_values_is_served_retrained_as_itself_and_promoted(kafka, tmp_path):
    create_topics(kafka)
    rows, species = penguins()
    known = [i for i, s in enumerate(species) if s != "Gentoo"]  # the first version is trained before any Gentoo
    store = ArtifactStore(tmp_path / "artifacts", 1 << 20)
    first = bootstrap_version([rows[i] for i in known], [species[i] for i in known], model_name="penguins",
                              feature_names=PENGUIN_NAMES, feature_types=PENGUIN_TYPES, classes=PENGUIN_CLASSES,
                              store=store, pipeline=penguin_pipeline())  # fmt: skip
    spec = first.lineage["hyperparameters"]["pipeline"]
    publish(kafka, [first, first.with_status(Status.SERVING, "the team's pipeline")])
    env = {"LOOPLINE_INFERENCE_MODEL_NAME": "penguins", "LOOPLINE_REGISTRY_ARTIFACT_DIR": str(tmp_path / "artifacts"),
           "LOOPLINE_TRAINER_MIN_EVENTS": "150", "LOOPLINE_TRAINER_DEVICE": "cpu",
           "LOOPLINE_DRIFT_MIN_SAMPLES": "150"}  # 220 birds come before the drift  # fmt: skip
    order = np.random.default_rng(0).permutation(len(rows)).tolist()
    before = [(rows[i], species[i]) for i in order if species[i] != "Gentoo"]
    after = [(rows[i], species[i]) for _ in range(3) for i in order]  # Gentoos arrive: a third of the birds
    with (worker("inference", kafka, tmp_path, **env), worker("join", kafka, tmp_path, **env),
          worker("drift", kafka, tmp_path, **env), worker("trainer", kafka, tmp_path, **env)):  # fmt: skip
        send(kafka, before, 0)
        produce(kafka, "features", [
            ("bad-1", encode_features("bad-1", "b", fields=rows[0] | {"island": None}, event_time=T0)),
            ("bad-2", encode_features("bad-2", "b", fields=rows[0] | {"year": "2007"}, event_time=T0)),
        ])  # fmt: skip
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
