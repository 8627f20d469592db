"""``loopline demo``: the whole loop on a drifting stream, with live progress and a report.

It starts the local broker if none answers, creates the topics under a prefix of its own (so that
every run starts clean), trains and serves a bootstrap model, starts every agent as a worker
process, and sends a paced stream with late labels, a concept drift, a covariate drift and a few
malformed events. At the end it prints the analytics from ClickHouse and writes a report folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clickhouse_connect.driver.exceptions import DatabaseError

from loopline.analytics.queries import QueryError
from loopline.demo.report import Report, write_report
from loopline.demo.stream import N_FEATURES, DemoStream, malformed
from loopline.errors import ConfigError
from loopline.kafka.broker import Broker, free_port, metadata_answers
from loopline.kafka.clients import make_sender, send_all
from loopline.kafka.topics import create_topics
from loopline.metrics import read_metric, reports_metric
from loopline.models import ArtifactStore, TrainConfig, bootstrap_version
from loopline.models.datasets import Concept, feature_names, sample
from loopline.models.registry import load_registry, publish
from loopline.query_cli import run_query
from loopline.settings import (
    BrokerSettings,
    ClickHouseSettings,
    DemoSettings,
    KafkaSettings,
    RegistrySettings,
    SinkSettings,
)

__all__ = ["AGENTS", "run_demo"]

AGENTS = ["inference", "join", "drift", "trainer", "sink"]
MODEL = "demo"
STAGING_OUTCOMES = 200
"""A new version runs in shadow until it beats the serving one on this many live outcomes of the same
events (``LOOPLINE_TRAINER_STAGING_OUTCOMES``, unless set otherwise)."""


def ensure_broker(kafka: KafkaSettings, broker: BrokerSettings) -> KafkaSettings:
    """Use the brokers in ``kafka`` if they answer, else start the local broker and point at it."""
    if metadata_answers(kafka.bootstrap_servers):
        print(f"kafka      using the broker at {kafka.bootstrap_servers}")
        return kafka
    servers = Broker(broker).start()
    print(f"kafka      started a local broker on {servers} (data in {broker.data_dir})")
    return kafka.model_copy(update={"bootstrap_servers": servers})


def serve_bootstrap_model(kafka: KafkaSettings, registry_settings: RegistrySettings) -> None:
    """Train version 1 on the stream's first concept and make it serve."""
    x, y = sample(Concept(seed=0, n_features=N_FEATURES), rows=20000, seed=0)
    store = ArtifactStore(registry_settings.artifact_dir, registry_settings.inline_limit_bytes)
    version = bootstrap_version(x, y, model_name=MODEL, feature_names=feature_names(N_FEATURES), classes=["no", "yes"],
                                store=store, config=TrainConfig(epochs=5))  # fmt: skip
    registry = load_registry(kafka)
    registry.apply(version)
    publish(kafka, [version, *registry.promote(MODEL, version.version, "demo bootstrap")])
    print(f"model      trained {MODEL} v1 (holdout accuracy {version.metrics['holdout_accuracy']:.3f}), serving")


class Workers:
    """The agents as worker processes, each with its metrics on a port of its own."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.ports = {agent: free_port() for agent in AGENTS}
        self.processes = []
        log_dir.mkdir(parents=True, exist_ok=True)
        for agent in AGENTS:
            with open(log_dir / f"{agent}.log", "wb") as log:
                self.processes.append(subprocess.Popen(
                    [sys.executable, "-m", "loopline.cli", "worker", agent, "--loglevel", "warning"],
                    env=env | {"LOOPLINE_METRICS_PORT": str(self.ports[agent]), "LOOPLINE_METRICS_HOST": "127.0.0.1"},
                    stdout=log, stderr=subprocess.STDOUT,
                ))  # fmt: skip
        print(f"workers    {', '.join(AGENTS)} started (logs in {log_dir})")

    def metric(self, agent: str, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples on ``agent`` whose labels include ``labels`` (0 when it does not answer)."""
        try:
            return read_metric(self.ports[agent], name, timeout_s=2, **labels)
        except OSError:
            return 0.0

    def wait_until_consuming(self, timeout_s: float = 180.0) -> None:
        """Wait until every worker reads its partitions (it reports their lag): on a busy machine a worker can
        take many seconds to start, and a stream sent before would find the loop behind it."""
        deadline = time.monotonic() + timeout_s
        waiting = list(AGENTS)
        while waiting and time.monotonic() < deadline:
            waiting = [agent for agent in waiting if not reports_metric(self.ports[agent], "loopline_consumer_lag")]
            time.sleep(0.5)
        if waiting:
            print(f"workers    {', '.join(waiting)} not consuming after {timeout_s:.0f}s; sending anyway")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


@contextmanager
def running(env: dict[str, str], log_dir: Path) -> Iterator[Workers]:
    workers = Workers(env, log_dir)
    try:
        yield workers
    finally:
        workers.stop()


def progress(workers: Workers, sent: int, started: float) -> str:
    serving = workers.metric("inference", "loopline_serving_version", role="serving")
    accuracy = workers.metric("drift", "loopline_online_accuracy", version=str(int(serving)), shadow="false")
    return (f"{time.monotonic() - started:5.0f}s  sent {sent:6d}  predicted "
            f"{workers.metric('inference', 'loopline_predictions_out_total', shadow='false'):6.0f}  joined "
            f"{workers.metric('join', 'loopline_outcomes_out_total'):6.0f}  serving v{serving:.0f}  accuracy "
            f"{accuracy:.3f}  drift events {workers.metric('drift', 'loopline_drift_events_total'):.0f}  retrain "
            f"requests {workers.metric('drift', 'loopline_retrain_requests_total'):.0f}  retrains answered "
            f"{workers.metric('trainer', 'loopline_retrains_total'):.0f}")  # fmt: skip


def run_demo(
    kafka: KafkaSettings,
    broker: BrokerSettings,
    clickhouse: ClickHouseSettings,
    registry: RegistrySettings,
    settings: DemoSettings,
) -> Report:
    """Run the loop on the demo stream; return (and write) its report."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kafka = ensure_broker(kafka, broker).model_copy(update={"topic_prefix": f"{kafka.topic_prefix}demo-{stamp}."})
    clickhouse = clickhouse.model_copy(update={"database": f"demo_{stamp.replace('-', '_')}"})
    sink = SinkSettings(query_port=free_port())
    create_topics(kafka)
    print(f"topics     under '{kafka.topic_prefix}'; ClickHouse database {clickhouse.database}")
    serve_bootstrap_model(kafka, registry)
    report_dir = settings.report_dir / stamp
    env = (
        {"LOOPLINE_TRAINER_STAGING_OUTCOMES": str(STAGING_OUTCOMES)}
        | dict(os.environ)
        | {
            "LOOPLINE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "LOOPLINE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
            "LOOPLINE_KAFKA_PARTITIONS": str(kafka.partitions),
            "LOOPLINE_INFERENCE_MODEL_NAME": MODEL,
            "LOOPLINE_REGISTRY_ARTIFACT_DIR": str(registry.artifact_dir),
            "LOOPLINE_STATE_DIR": str(report_dir / "state"),  # the run's own: its topics are its own too
            "LOOPLINE_CLICKHOUSE_DSN": clickhouse.dsn.get_secret_value(),
            "LOOPLINE_CLICKHOUSE_DATABASE": str(clickhouse.database),
            "LOOPLINE_SINK_QUERY_PORT": str(sink.query_port),
            "LOOPLINE_SINK_MAX_WAIT_MS": "200",
        }
    )
    stream = DemoStream(settings)
    with running(env, report_dir / "logs") as workers:
        workers.wait_until_consuming()
        start_ms = int(time.time() * 1000)  # event time of event 0
        started, sent, shown = time.monotonic(), 0, 0.0
        producer = make_sender(kafka)
        send_all(kafka, kafka.topic("features"), malformed(), producer)
        chunk = max(1, int(settings.rate / 10))
        for step in stream.steps(chunk, start_ms, 1000 / settings.rate):
            if step.features:
                send_all(kafka, kafka.topic("features"), step.features, producer)
            if step.labels:
                send_all(kafka, kafka.topic("labels"), step.labels, producer)
            sent += len(step.features)
            wait = started + (step.first_event + chunk) / settings.rate - time.monotonic()
            time.sleep(max(0.0, wait))
            if time.monotonic() - shown >= 3:
                print(progress(workers, sent, started))
                shown = time.monotonic()
        print(f"sent       {sent} feature events, their labels and {len(malformed())} malformed events")
        _wait_until_stored(clickhouse, sink, sent, workers, started)
        report = write_report(kafka, clickhouse, sink, settings, start_ms, report_dir)
    print(report.text)
    print(f"report     {report_dir / 'summary.md'} and {report_dir / 'accuracy.png'}")
    print(f"query      LOOPLINE_CLICKHOUSE_DATABASE={clickhouse.database} loopline query timeline")
    return report


def _wait_until_stored(
    clickhouse: ClickHouseSettings, sink: SinkSettings, sent: int, workers: Workers, started: float
) -> None:
    """Wait (up to two minutes) until every prediction and outcome is in ClickHouse."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            counts = run_query("SELECT (SELECT count() FROM predictions FINAL WHERE NOT shadow), "
                               "(SELECT count() FROM outcomes FINAL WHERE NOT shadow)", {}, clickhouse, sink).rows[0]  # fmt: skip
        except (QueryError, ConfigError, DatabaseError):  # the sink is still starting: no endpoint or no table yet
            counts = [0, 0]
        if counts[0] >= sent and counts[1] >= sent:
            return
        print(progress(workers, sent, started))
        time.sleep(3)
    print("waited two minutes for the last records; the report covers what is stored")
