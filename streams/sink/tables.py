"""Which topic lands in which ClickHouse table, and how a decoded record becomes a row."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["TABLES", "Row", "Table"]

Row = list[Any]
# Timestamps are epoch milliseconds, which clickhouse-connect writes into DateTime64(3) as they are.
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Table:
    """A topic of the catalogue, its schema and the table its records go to."""

    topic: str
    schema: str
    table: str
    columns: tuple[str, ...]
    row: Callable[[dict[str, Any]], Row]

    def partitions(self, rows: list[Row]) -> list[list[Row]]:
        """``rows`` split by ClickHouse partition: every table is ``PARTITION BY toYYYYMMDD(event_time)``
        (UTC days, checked by tests/store), and one insert may touch only so many partitions (100 by
        default), which a backfill over months exceeds."""
        at = self.columns.index("event_time")
        days: dict[int, list[Row]] = {}
        for row in rows:
            days.setdefault(row[at] // DAY_MS, []).append(row)
        return list(days.values())


def _fields(*names: str) -> tuple[tuple[str, ...], Callable[[dict[str, Any]], Row]]:
    """Columns named like the record's fields, in order."""
    return names, lambda record: [record[name] for name in names]


PREDICTION = _fields("event_id", "event_time", "prediction_time", "entity_id", "model_name", "model_version",
                     "shadow", "scores", "predicted_class", "queue_wait_ms", "inference_ms")  # fmt: skip
OUTCOME = _fields("event_id", "event_time", "entity_id", "values", "model_name", "model_version", "shadow", "scores",
                  "predicted_class", "label", "label_time", "prediction_delay_ms", "label_delay_ms", "correct",
                  "log_loss", "label_rate")  # fmt: skip
EVIDENCE = ("kind", "detector", "feature", "statistics", "window_start", "window_end", "samples", "offsets")


def _evidence(evidence: dict[str, Any] | None) -> Row:
    if evidence is None:
        return [None, None, None, {}, None, None, None, []]
    offsets = [(o["topic"], o["partition"], o["start"], o["end"]) for o in evidence["offsets"]]
    return [evidence[name] for name in EVIDENCE[:-1]] + [offsets]


def _model_version(record: dict[str, Any]) -> Row:
    lineage = record["lineage"]
    return [record["event_id"], record["event_time"], record["model_name"], record["version"], record["status"],
            record["traffic"], record["reason"], record["created_time"], record["artifact_format"], record["artifact_uri"],
            record["sha256"], record["feature_names"], record["classes"], record["metrics"],
            lineage["parent_version"], json.dumps(lineage, sort_keys=True)]  # fmt: skip


TABLES = [
    Table("predictions", "prediction", "predictions", *PREDICTION),
    Table("shadow-predictions", "prediction", "predictions", *PREDICTION),
    Table("labels", "label", "labels", *_fields("event_id", "event_time", "label")),
    Table("outcomes", "outcome", "outcomes", *OUTCOME),
    Table(
        "drift-events", "drift_event", "drift_events",
        ("event_id", "event_time", "model_name", "model_version", *EVIDENCE),
        lambda r: [r["event_id"], r["event_time"], r["model_name"], r["model_version"], *_evidence(r["evidence"])],
    ),
    Table(
        "retrain-requests", "retrain_request", "retrain_requests",
        ("event_id", "event_time", "model_name", "reason", "requested_by", *EVIDENCE),
        lambda r: [r["event_id"], r["event_time"], r["model_name"], r["reason"], r["requested_by"],
                   *_evidence(r["evidence"])],
    ),
    Table(
        "model-versions", "model_version", "model_versions",
        ("event_id", "event_time", "model_name", "version", "status", "traffic", "reason", "created_time",
         "artifact_format", "artifact_uri", "sha256", "feature_names", "classes", "metrics", "parent_version", "lineage"),
        _model_version,
    ),
    Table("dead-letters", "dead_letter", "dead_letters", *_fields(
        "event_id", "event_time", "agent", "reason", "error", "source_topic", "source_partition", "source_offset",
        "key", "value")),
]  # fmt: skip
"""Every table the sink writes, one per topic it reads (shadow predictions share the predictions table)."""
