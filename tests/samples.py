"""One valid sample record of every schema, for round-trip tests."""

from __future__ import annotations

import time
from typing import Any

T0 = 1_795_000_000_000
EVIDENCE = {
    "kind": "covariate",
    "detector": "ADWIN",
    "feature": "amount",
    "statistics": {"mean_before": 0.1, "mean_after": 0.9},
    "window_start": T0,
    "window_end": T0 + 60_000,
    "samples": 1200,
    "offsets": [{"topic": "loopline.outcomes", "partition": 0, "start": 10, "end": 1210}],
}

SAMPLES: dict[str, dict[str, Any]] = {
    "features": {"event_id": "e-1", "event_time": T0, "entity_id": "user-7", "values": [0.5, -1.25, 3.0], "fields": {}},
    "prediction": {
        "event_id": "e-1", "event_time": T0, "prediction_time": T0 + 3, "entity_id": "user-7",
        "model_name": "fraud", "model_version": 2, "shadow": False, "scores": [0.25, 0.75],
        "predicted_class": "yes", "queue_wait_ms": 1.5, "inference_ms": 0.25,
    },
    "label": {"event_id": "e-1", "event_time": T0 + 3_600_000, "label": "yes"},
    "outcome": {
        "event_id": "e-1", "event_time": T0, "entity_id": "user-7", "values": [0.5, -1.25, 3.0],
        "model_name": "fraud", "model_version": 2, "shadow": False, "scores": [0.25, 0.75],
        "predicted_class": "yes", "label": "yes", "label_time": T0 + 3_600_000,
        "prediction_delay_ms": 3, "label_delay_ms": 3_600_000, "correct": True, "log_loss": 0.25, "label_rate": 0.5,
    },
    "drift_event": {
        "event_id": "d-1", "event_time": T0, "model_name": "fraud", "model_version": 2, "evidence": EVIDENCE,
    },
    "retrain_request": {
        "event_id": "r-1", "event_time": T0, "model_name": "fraud", "reason": "covariate drift on amount",
        "requested_by": "drift", "evidence": EVIDENCE,
        "since": [{"topic": "loopline.outcomes", "partition": 0, "offset": 812}],
    },
    "model_version": {
        "event_id": "v-1", "event_time": T0, "model_name": "fraud", "version": 2, "status": "serving", "traffic": 0.0,
        "reason": "beat v1 by 0.04 accuracy", "created_time": T0 - 1000, "artifact_format": "onnx",
        "artifact": b"\x08\x07onnx-bytes", "artifact_uri": None, "sha256": "ab" * 32,
        "feature_names": ["amount", "age", "hour"], "feature_types": [], "classes": ["no", "yes"], "metrics": {"accuracy": 0.93},
        "lineage": {
            "parent_version": 1,
            "data": [{"topic": "loopline.outcomes", "partition": 0, "start": 0, "end": 20000}],
            "code_version": "0.1.0", "hyperparameters": {"epochs": "5"}, "seed": 0,
            "packages": {"torch": "2.x"}, "device": "cpu", "duration_ms": 5200,
            "regression_set": {"path": "regression/m.csv", "sha256": "ab" * 32, "cases": 120},
            "requests": [],
        },
    },
    "dead_letter": {
        "event_id": "loopline.features/0/17", "event_time": T0, "agent": "inference", "reason": "corrupt",
        "error": "not an Avro single-object record (bad marker)", "source_topic": "loopline.features",
        "source_partition": 0, "source_offset": 17, "key": b"e-9", "value": b"\x00garbage",
    },
}  # fmt: skip


TOPIC_SCHEMA = {"predictions": "prediction", "labels": "label", "outcomes": "outcome", "drift-events": "drift_event",
                "retrain-requests": "retrain_request", "model-versions": "model_version", "dead-letters": "dead_letter"}  # fmt: skip


def analytics_records() -> dict[str, list[dict[str, Any]]]:
    """A known dataset for the analytics tests, by topic.

    20 served predictions of model ``fraud`` version 2, each 5 ms after its event; labels and
    outcomes for the first 10, of which 7 are correct; 5 shadow outcomes of version 3; three dead
    letters (two ``corrupt``, one ``wrong-length``) from now; one drift event, retrain request and
    model version.
    """
    records: dict[str, list[dict[str, Any]]] = {topic: [] for topic in TOPIC_SCHEMA}
    for i in range(20):
        records["predictions"].append(SAMPLES["prediction"] | {"event_id": f"e{i}", "event_time": T0 + i * 1000,
                                                               "prediction_time": T0 + i * 1000 + 5})  # fmt: skip
    for i in range(10):
        records["labels"].append(SAMPLES["label"] | {"event_id": f"e{i}"})
        records["outcomes"].append(SAMPLES["outcome"] | {"event_id": f"e{i}", "event_time": T0 + i * 1000,
                                   "correct": i < 7, "log_loss": 0.5, "label_delay_ms": 60_000})  # fmt: skip
    for i in range(5):
        records["outcomes"].append(SAMPLES["outcome"] | {"event_id": f"e{i}", "event_time": T0 + i * 1000,
                                   "model_version": 3, "shadow": True, "correct": i < 4})  # fmt: skip
    now = int(time.time() * 1000)
    for i, reason in enumerate(["corrupt", "corrupt", "wrong-length"]):
        records["dead-letters"].append(
            SAMPLES["dead_letter"] | {"event_id": f"t/0/{i}", "event_time": now, "reason": reason}
        )
    records["drift-events"].append(SAMPLES["drift_event"])
    records["retrain-requests"].append(SAMPLES["retrain_request"])
    records["model-versions"].append(SAMPLES["model_version"])
    return records


def load_analytics_records(client: Any) -> None:
    """Create the tables in ``client``'s database and write :func:`analytics_records` the way the sink does."""
    from loopline.store import migrate

    migrate(client)
    write_records(client, analytics_records())


def write_records(client: Any, by_topic: dict[str, list[dict[str, Any]]]) -> None:
    """Write records (by topic, unprefixed) to ``client``'s tables the way the sink does."""
    from loopline.codec import Codec
    from loopline.records import SourceRecord
    from loopline.settings import KafkaSettings
    from loopline.sink.core import SinkCore

    records = [
        SourceRecord(None, Codec.load(TOPIC_SCHEMA[topic]).encode(row), topic, 0, offset, 0)
        for topic, rows in by_topic.items()
        for offset, row in enumerate(rows)
    ]
    for table, rows in SinkCore(KafkaSettings(topic_prefix="")).rows(records).rows.items():
        client.insert(table.table, rows, column_names=list(table.columns))
