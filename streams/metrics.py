"""Prometheus metrics of the workers, and the /metrics endpoint."""

from __future__ import annotations

import urllib.request

import numpy as np
from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from loopline.settings import MetricsSettings

__all__ = [
    "BACKEND_SWITCHES",
    "BATCH_SIZE",
    "CANARY_STEPS",
    "CANARY_TRAFFIC",
    "CONSUMER_LAG",
    "DEAD_LETTERS",
    "DRIFT_EVENTS",
    "EVENTS_IN",
    "INFERENCE_SECONDS",
    "JOIN_DUPLICATES",
    "JOIN_EXPIRED",
    "JOIN_PENDING",
    "JOIN_SKIPPED",
    "LABEL_RATE",
    "LATENCY_SECONDS",
    "MODEL_FALLBACKS",
    "MODEL_REJECTIONS",
    "MODEL_SWAPS",
    "ONLINE_ACCURACY",
    "ONLINE_LOG_LOSS",
    "OUTCOMES_OUT",
    "PREDICTIONS_OUT",
    "RETRAINS",
    "RETRAIN_REQUESTS",
    "ROLLBACKS",
    "RUNTIME_FALLBACK_ROWS",
    "SERVING_VERSION",
    "SHADOW_FAILURES",
    "SINK_FAILURES",
    "SINK_ROWS",
    "STAGING_VERDICTS",
    "STATE_BYTES",
    "STATE_KEYS",
    "STATE_RESTORED",
    "STATE_RESTORE_SECONDS",
    "observe_all",
    "read_metric",
    "reports_metric",
    "serve_metrics",
]

EVENTS_IN = Counter("loopline_events_in", "Records consumed by an agent", ["agent"])
PREDICTIONS_OUT = Counter("loopline_predictions_out", "Predictions emitted", ["model", "version", "shadow"])
DEAD_LETTERS = Counter("loopline_dead_letters", "Records sent to dead-letters", ["agent", "reason"])
BATCH_SIZE = Histogram(
    "loopline_batch_size",
    "Records per micro-batch",
    ["agent"],
    buckets=[1, 4, 16, 64, 256, 1024, 4096, 16384],
)
INFERENCE_SECONDS = Histogram(
    "loopline_inference_seconds",
    "Model time per batch",
    ["model", "shadow"],
    buckets=[1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0],
)
LATENCY_SECONDS = Histogram(
    "loopline_event_to_prediction_seconds",
    "Event time to prediction time",
    ["model"],
    buckets=[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
)
SERVING_VERSION = Gauge("loopline_serving_version", "Model version this worker serves", ["model", "role"])
CANARY_TRAFFIC = Gauge(
    "loopline_canary_traffic", "Share of the entities this worker's canary version serves", ["model"]
)
MODEL_SWAPS = Counter("loopline_model_swaps", "Versions swapped in", ["model", "role"])
MODEL_REJECTIONS = Counter("loopline_model_rejections", "Versions that failed their checks", ["model", "reason"])
MODEL_FALLBACKS = Counter(
    "loopline_model_fallbacks",
    "Starts that served an older version because the serving one failed its checks",
    ["model"],
)
RUNTIME_FALLBACK_ROWS = Counter(
    "loopline_runtime_fallback_rows",
    "Rows the serving version failed on at run time, by what served them instead (version/device; none: dead-lettered)",
    ["model", "version", "served_by"],
)
BACKEND_SWITCHES = Counter(
    "loopline_backend_switches",
    "Times a worker moved to a fallback because the serving backend broke (it failed on the probe batch)",
    ["model", "version", "to"],
)
STAGING_VERDICTS = Counter(
    "loopline_staging_verdicts", "Staged versions judged on live outcomes, by verdict", ["model", "verdict"]
)
CANARY_STEPS = Counter(
    "loopline_canary_steps",
    "Canary steps judged on live outcomes, by verdict (advanced, promoted, aborted)",
    ["model", "verdict"],
)
SHADOW_FAILURES = Counter("loopline_shadow_failures", "Batches the shadow version failed on (skipped)", ["model"])
OUTCOMES_OUT = Counter("loopline_outcomes_out", "Outcomes emitted by the join", ["model"])
JOIN_EXPIRED = Counter("loopline_join_expired", "Event ids that left the join state without an outcome", ["reason"])
JOIN_DUPLICATES = Counter("loopline_join_duplicates", "Repeated features, predictions or labels ignored by the join")
JOIN_SKIPPED = Counter(
    "loopline_join_skipped", "Undecodable feature events skipped by the join (inference dead-letters them)"
)
JOIN_PENDING = Gauge("loopline_join_pending", "Event ids held by this join worker")
LABEL_RATE = Gauge("loopline_label_rate", "Share of recent predictions that got a label", ["model", "version"])
ONLINE_ACCURACY = Gauge("loopline_online_accuracy", "Accuracy over the recent outcomes", ["model", "version", "shadow"])
ONLINE_LOG_LOSS = Gauge("loopline_online_log_loss", "Log loss over the recent outcomes", ["model", "version", "shadow"])
DRIFT_EVENTS = Counter("loopline_drift_events", "Drift detections", ["model", "kind"])
SINK_ROWS = Counter("loopline_sink_rows", "Rows written to ClickHouse", ["table"])
SINK_FAILURES = Counter("loopline_sink_failures", "Failed ClickHouse insert rounds (each is retried)")
CONSUMER_LAG = Gauge(
    "loopline_consumer_lag", "Records of a partition not yet read by a group", ["group", "topic", "partition"]
)
RETRAINS = Counter(
    "loopline_retrains",
    "Retrain requests by result: promoted, staged, rejected, refused, failed, coalesced",
    ["model", "result"],
)
ROLLBACKS = Counter("loopline_rollbacks", "Automatic rollbacks of a newly serving version", ["model"])
STATE_KEYS = Gauge("loopline_state_keys", "Keys in an agent's state store (estimated on disk)", ["agent", "partition"])
STATE_BYTES = Gauge(
    "loopline_state_bytes", "Bytes in an agent's state store (estimated on disk)", ["agent", "partition"]
)
STATE_RESTORE_SECONDS = Gauge(
    "loopline_state_restore_seconds", "How long the last restore of a partition's state took", ["agent", "partition"]
)
STATE_RESTORED = Counter("loopline_state_restored_records", "Changelog records read back into state stores", ["agent"])
RETRAIN_REQUESTS = Counter("loopline_retrain_requests", "Retrain requests raised", ["model", "requested_by"])


def observe_all(histogram: Histogram, values: np.ndarray) -> None:
    """``histogram.observe(v)`` for every ``v`` in ``values``, in one pass per batch.

    A batch of predictions has one latency per event; observing them one by one cost about 2 µs an
    event, a seventh of an inference worker's time (docs/benchmarks.md). prometheus_client has no
    bulk call, so this adds the bucket counts and the sum the way ``observe`` does, through the
    histogram's own value objects (tests/test_metrics.py checks it against ``observe``).
    """
    if not len(values):
        return
    bounds = np.asarray(histogram._upper_bounds)
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds) + 1)
    histogram._sum.inc(float(values.sum()))
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=False):
        if count:
            bucket.inc(count)


def serve_metrics(settings: MetricsSettings) -> None:
    """Serve /metrics on ``settings.host:settings.port`` in a background thread (port 0: off)."""
    if settings.port:
        start_http_server(settings.port, addr=settings.host)


def _samples(port: int, timeout_s: float) -> list[Sample]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as response:
        text = response.read().decode()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def read_metric(port: int, name: str, timeout_s: float = 5.0, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``, scraped from a worker on
    127.0.0.1:``port`` (0 when it has none).

    Raises:
        OSError: the worker does not answer.
    """
    return sum(s.value for s in _samples(port, timeout_s) if s.name == name and labels.items() <= s.labels.items())


def reports_metric(port: int, name: str, timeout_s: float = 5.0) -> bool:
    """Whether the worker on 127.0.0.1:``port`` answers with a sample of ``name`` (False when it does not answer)."""
    try:
        return any(s.name == name for s in _samples(port, timeout_s))
    except OSError:
        return False
