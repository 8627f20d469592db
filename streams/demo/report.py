"""The demo's report: figures from ClickHouse, a plot of rolling accuracy with the loop's moments, a summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loopline.codec import Codec
from loopline.kafka.clients import offset_reader, read_spans
from loopline.query_cli import run_query
from loopline.records import Topic
from loopline.settings import ClickHouseSettings, DemoSettings, KafkaSettings, SinkSettings

__all__ = ["Report", "write_report"]

ROLLING = 200


@dataclass
class Report:
    """What the demo found, as figures and as text."""

    figures: dict[str, float | None]
    timeline: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]
    text: str = ""
    counts: dict[str, int] = field(default_factory=dict)


def _rows(sql: str, clickhouse: ClickHouseSettings, sink: SinkSettings) -> list[dict[str, Any]]:
    result = run_query(sql, {}, clickhouse, sink)
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def _rolling(correct: np.ndarray) -> np.ndarray:
    """Accuracy over each run of ``ROLLING`` consecutive outcomes (empty when there are fewer)."""
    return np.convolve(correct, np.ones(ROLLING) / ROLLING, mode="valid") if len(correct) >= ROLLING else np.zeros(0)


def _figures(
    outcomes: list[dict[str, Any]],
    timeline: list[dict[str, Any]],
    onset: int,
    shift: int,
    seen_after_onset: Callable[[dict[str, Any]], int],
) -> dict[str, float | None]:
    times = np.array([o["t"] for o in outcomes])
    correct = np.array([o["correct"] for o in outcomes], dtype=float)
    versions = np.array([o["version"] for o in outcomes])
    after_onset = _rolling(correct)[times[ROLLING - 1 :] >= onset]
    detections = [e for e in timeline if e["kind"] == "concept drift" and e["t"] >= onset]
    served = [e for e in timeline if e["kind"] == "version serving" and e["version"] > 1 and e["t"] >= onset]
    figures: dict[str, float | None] = {
        "accuracy_before_drift": float(correct[times < onset].mean()) if (times < onset).any() else None,
        "accuracy_worst_rolling": float(after_onset.min()) if len(after_onset) else None,
        "detection_s": None, "detection_labeled_events": None, "new_version_serving_s": None, "accuracy_after": None,
    }  # fmt: skip
    if detections:
        first = detections[0]
        figures["detection_s"] = (first["t"] - onset) / 1000
        figures["detection_labeled_events"] = float(seen_after_onset(first))
    if served:
        figures["new_version_serving_s"] = (served[0]["t"] - onset) / 1000
        mine = (versions >= served[0]["version"]) & (times < shift)  # it, or a follow-up trained on more data
        figures["accuracy_after"] = float(correct[mine].mean()) if mine.any() else None
    return figures


def _plot(
    outcomes: list[dict[str, Any]], timeline: list[dict[str, Any]], marks: dict[str, int], start: int, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = (np.array([o["t"] for o in outcomes]) - start) / 1000
    correct = np.array([o["correct"] for o in outcomes], dtype=float)
    figure, axis = plt.subplots(figsize=(11, 4.5))
    axis.plot(times[ROLLING - 1 :], _rolling(correct), color="#1f77b4", label=f"accuracy, rolling {ROLLING} outcomes")
    for name, t in marks.items():
        axis.axvline((t - start) / 1000, color="grey", linestyle=":", linewidth=1.5)
        axis.text((t - start) / 1000, 0.02, f" {name}", rotation=90, color="grey", va="bottom")
    styles = {"concept drift": "#ff7f0e", "covariate drift": "#bcbd22", "retrain request": "#d62728",
              "version shadow": "#17becf", "version canary": "#8c564b", "version serving": "#2ca02c",
              "version rejected": "#9467bd"}  # fmt: skip
    seen: set[str] = set()
    for event in timeline:
        kind = "rollback" if "rollback" in event["detail"] else event["kind"]
        color = styles.get(kind, "black")
        axis.axvline((event["served"] - start) / 1000, color=color, alpha=0.8, label=None if kind in seen else kind)
        seen.add(kind)
    axis.set_xlabel("event time, seconds since the first event (moments placed at the event served when they happened)")
    axis.set_ylabel("accuracy")
    axis.set_ylim(0, 1.02)
    axis.legend(loc="lower left", fontsize=8)
    axis.set_title("loopline demo: served accuracy, drifts, retrains and versions")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _seen_after_onset(kafka: KafkaSettings, detection: dict[str, Any], onset: int) -> int:
    """How many outcomes of events after the onset the detector had seen when it fired.

    Read from the outcome offsets in the drift event's evidence, not from counts: outcomes of
    different input partitions reach the detector in any order, so "the first N outcomes" of the
    stream are not the ones it saw.
    """
    topic = kafka.topic(Topic.OUTCOMES)
    spans = {}
    for span in detection["offsets"]:
        name, partition, start, end = (span[k] for k in ("topic", "partition", "start", "end")) \
            if isinstance(span, dict) else span  # fmt: skip
        if name == topic:
            spans[int(partition)] = (int(start), int(end) + 1)
    codec = Codec.load("outcome")
    consumer = offset_reader(kafka)
    try:
        seen = [codec.decode(m.value() or b"") for m in read_spans(consumer, topic, spans, timeout_s=30)]
    finally:
        consumer.close()
    return sum(1 for o in seen if not o["shadow"] and o["model_version"] == detection["version"]
               and o["event_time"] >= onset)  # fmt: skip


def write_report(
    kafka: KafkaSettings,
    clickhouse: ClickHouseSettings,
    sink: SinkSettings,
    settings: DemoSettings,
    start_ms: int,
    folder: Path,
) -> Report:
    """Query ClickHouse, write ``accuracy.png`` and ``summary.md`` to ``folder``, and return the figures."""
    folder.mkdir(parents=True, exist_ok=True)
    ms_per_event = 1000 / settings.rate
    onset = start_ms + int(settings.concept_drift_at * ms_per_event)
    shift = start_ms + int(settings.covariate_drift_at * ms_per_event)
    outcomes = _rows("SELECT toUnixTimestamp64Milli(event_time) AS t, model_version AS version, correct "
                     "FROM outcomes FINAL WHERE NOT shadow ORDER BY t", clickhouse, sink)  # fmt: skip
    timeline = _rows("""
        SELECT t, kind, version, detail, samples FROM (
            SELECT toUnixTimestamp64Milli(event_time) AS t, concat(kind, ' drift') AS kind, model_version AS version,
                   concat(detector, if(isNull(feature), '', concat(' on ', feature))) AS detail, samples
            FROM drift_events FINAL
            UNION ALL
            SELECT toUnixTimestamp64Milli(event_time), 'retrain request', 0, reason, 0 FROM retrain_requests FINAL
            UNION ALL
            SELECT toUnixTimestamp64Milli(event_time), concat('version ', status), version, reason, 0
            FROM model_versions FINAL
        ) ORDER BY t""", clickhouse, sink)  # fmt: skip
    dead = _rows("SELECT agent, reason, count() AS letters FROM dead_letters FINAL GROUP BY agent, reason ORDER BY reason",
                 clickhouse, sink)  # fmt: skip
    counts = _rows("SELECT (SELECT count() FROM predictions FINAL WHERE NOT shadow) AS predictions, "
                   "(SELECT uniqExact(event_id) FROM predictions FINAL WHERE NOT shadow) AS events_predicted, "
                   "(SELECT count() FROM outcomes FINAL WHERE NOT shadow) AS outcomes", clickhouse, sink)[0]  # fmt: skip
    served = _rows("SELECT toUnixTimestamp64Milli(prediction_time) AS at, toUnixTimestamp64Milli(event_time) AS t "
                   "FROM predictions FINAL WHERE NOT shadow ORDER BY at", clickhouse, sink)  # fmt: skip
    at = np.array([p["at"] for p in served])
    newest = np.maximum.accumulate(np.array([p["t"] for p in served])) if served else np.array([start_ms])
    for event in timeline:  # the stream position being served at the moment of the event
        index = int(np.searchsorted(at, event["t"], side="right")) - 1
        event["served"] = int(newest[index]) if index >= 0 else start_ms
    evidence = {(e["t"], e["version"]): e for e in _rows(
        "SELECT toUnixTimestamp64Milli(event_time) AS t, model_version AS version, offsets FROM drift_events FINAL "
        "WHERE kind = 'concept'", clickhouse, sink)}  # fmt: skip
    figures = _figures(outcomes, timeline, onset, shift,
                       lambda first: _seen_after_onset(kafka, evidence[(first["t"], first["version"])], onset))  # fmt: skip
    marks = {"concept drift": onset, "covariate drift on x3": shift}
    moments = [e for e in timeline if e["t"] >= start_ms and e["kind"] not in ("version retired", "version candidate")]
    _plot(outcomes, moments, marks, start_ms, folder / "accuracy.png")
    report = Report(figures, timeline, dead, counts=counts)
    report.text = _summary(report, settings, start_ms)
    (folder / "summary.md").write_text(report.text + "\n\n![accuracy](accuracy.png)\n")
    return report


def _number(value: float | None, digits: int = 3) -> str:
    return "not reached" if value is None else f"{value:.{digits}f}"


def _summary(report: Report, settings: DemoSettings, start_ms: int) -> str:
    f = report.figures
    lines = [
        "# loopline demo",
        "",
        f"{settings.events} feature events at {settings.rate:.0f}/s; labels {settings.label_delay} events late; "
        f"concept drift at event {settings.concept_drift_at}, x3 moved by {settings.covariate_shift} std at event "
        f"{settings.covariate_drift_at}.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| accuracy before the drift | {_number(f['accuracy_before_drift'])} |",
        f"| worst rolling accuracy ({ROLLING} outcomes) after the drift | {_number(f['accuracy_worst_rolling'])} |",
        f"| drift onset → detection | {_number(f['detection_s'], 1)} s, {_number(f['detection_labeled_events'], 0)} "
        "labeled outcomes after the onset |",
        f"| drift onset → new version serving | {_number(f['new_version_serving_s'], 1)} s |",
        f"| accuracy of the new versions (before the covariate drift) | {_number(f['accuracy_after'])} |",
        f"| served predictions / distinct events | {report.counts['predictions']} / {report.counts['events_predicted']} |",
        f"| outcomes | {report.counts['outcomes']} |",
        "",
        "## Timeline",
        "",
    ]
    for event in report.timeline:
        seconds = (event["t"] - start_ms) / 1000
        lines.append(f"- {seconds:7.1f} s  {event['kind']}" + (f" v{event['version']}" if event["version"] else "")
                     + f": {event['detail'][:140]}")  # fmt: skip
    lines += ["", "## Dead letters", ""]
    lines += [f"- {d['agent']}: {d['reason']}: {d['letters']}" for d in report.dead_letters] or ["- none"]
    return "\n".join(lines)
