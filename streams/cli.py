"""The ``loopline`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from clickhouse_connect.driver.exceptions import DatabaseError
from pydantic import ValidationError

from models import ArtifactError, RegistryError
from streams.analytics.queries import QueryError
from streams.errors import ConfigError
from streams.inference.loader import ModelRejected
from streams.kafka.broker import KAFKA_OPS, Broker, BrokerError, fetch_classpath
from streams.models_cli import add_models_parser
from streams.query_cli import add_query_parser
from streams.settings import BrokerSettings, ClickHouseSettings, KafkaSettings

__all__ = ["main"]


def _broker_settings(args: argparse.Namespace) -> BrokerSettings:
    """Broker settings from the environment, overridden by the options given.

    Only options actually given are passed on, so that a port counts as explicit (and is checked
    against the one a data dir was created with) only when ``--port`` or LOOPLINE_BROKER_PORT is set.
    """
    overrides = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if args.port is not None:
        overrides["port"] = args.port
    return BrokerSettings(**overrides)


def cmd_kafka(args: argparse.Namespace) -> int:
    if args.action == "fetch":
        classpath = fetch_classpath(KAFKA_OPS / "target", refresh=True)
        print(f"resolved {len(classpath.split(':'))} jars")
        return 0
    broker = Broker(_broker_settings(args))
    if args.action == "start":
        print(f"kafka running on {broker.start()} (data and log in {broker.data_dir})")
    elif args.action == "stop":
        print("kafka stopped" if broker.stop() else "kafka was not running")
    else:
        status = broker.status()
        where = status.bootstrap_servers or "not configured"
        state = "running" if status.running else "stopped"
        print(f"kafka {state} ({where}, pid {status.pid}, data {status.data_dir})")
        return 0 if status.running else 1
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from streams.kafka.topics import create_topics

    for name, state in create_topics(KafkaSettings()).items():
        print(f"{name}: {state}")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from streams.store import connect, migrate

    client = connect(ClickHouseSettings())
    try:
        for name in migrate(client):
            print(f"applied {name}")
    finally:
        client.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.demo import run_demo
    from streams.settings import DemoSettings, RegistrySettings

    overrides = {"events": args.events} if args.events is not None else {}
    run_demo(KafkaSettings(), BrokerSettings(), ClickHouseSettings(), RegistrySettings(), DemoSettings(**overrides))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from streams.settings import settings_table

    print(settings_table())
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.agents.app import run
    from streams.metrics import serve_metrics
    from streams.settings import (
        DriftSettings,
        InferenceSettings,
        JoinSettings,
        MetricsSettings,
        RegistrySettings,
        SinkSettings,
        TrainerSettings,
    )

    if args.agent == "inference":
        from streams.agents.inference import build_inference_app

        app = build_inference_app(KafkaSettings(), InferenceSettings())
    elif args.agent == "join":
        from streams.agents.join import build_join_app

        app = build_join_app(KafkaSettings(), JoinSettings())
    elif args.agent == "drift":
        from streams.agents.drift import build_drift_app

        app = build_drift_app(KafkaSettings(), DriftSettings())
    elif args.agent == "sink":
        from streams.agents.sink import build_sink_app

        app = build_sink_app(KafkaSettings(), ClickHouseSettings(), SinkSettings())
    else:
        from streams.agents.trainer import build_trainer_app

        app = build_trainer_app(KafkaSettings(), TrainerSettings(), RegistrySettings())
    serve_metrics(MetricsSettings())
    run(app, loglevel=args.loglevel)
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    import time
    import uuid

    from streams.codec import Codec
    from streams.kafka.clients import send_all

    kafka = KafkaSettings()
    request = {
        "event_id": str(uuid.uuid4()),
        "event_time": int(time.time() * 1000),
        "model_name": args.model,
        "reason": args.reason,
        "requested_by": "cli",
        "evidence": None,
    }
    send_all(kafka, kafka.topic("retrain-requests"), [(args.model, Codec.load("retrain_request").encode(request))])
    print(f"retrain of {args.model} requested ({request['event_id']}); a trainer worker takes it from here")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``loopline`` command."""
    parser = argparse.ArgumentParser(prog="loopline", description="Closed-loop machine learning on Kafka.")
    sub = parser.add_subparsers(dest="command", required=True)

    kafka = sub.add_parser("kafka", help="the local single-node Kafka broker (tests, demo)")
    kafka.add_argument("action", choices=["fetch", "start", "stop", "status"])
    kafka.add_argument("--data-dir", type=Path, help="broker data dir (LOOPLINE_BROKER_DATA_DIR)")
    kafka.add_argument(
        "--port",
        type=int,
        default=None,
        help="listener port of a new broker, 0 for a free one; a restart keeps its port (LOOPLINE_BROKER_PORT)",
    )
    kafka.set_defaults(func=cmd_kafka)

    topics = sub.add_parser("topics", help="the topic catalogue")
    topics.add_argument("action", choices=["create"])
    topics.set_defaults(func=cmd_topics)

    db = sub.add_parser("db", help="the ClickHouse tables")
    db.add_argument("action", choices=["migrate"])
    db.set_defaults(func=cmd_db)

    worker = sub.add_parser("worker", help="run an agent in this process until SIGTERM")
    worker.add_argument("agent", choices=["inference", "join", "drift", "sink", "trainer"])
    worker.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    worker.set_defaults(func=cmd_worker)

    add_models_parser(sub)
    add_query_parser(sub)

    retrain = sub.add_parser("retrain", help="ask the trainer worker to retrain a model on its recent outcomes")
    retrain.add_argument("model")
    retrain.add_argument("--reason", default="requested by hand")
    retrain.set_defaults(func=cmd_retrain)

    config = sub.add_parser("config", help="print every LOOPLINE_* setting as a markdown table")
    config.set_defaults(func=cmd_config)

    demo = sub.add_parser("demo", help="the whole loop on a drifting stream: live progress, then a report")
    demo.add_argument("--events", type=int, help="feature events in the stream (LOOPLINE_DEMO_EVENTS)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``loopline`` console script."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (
        BrokerError, ConfigError, ValidationError, ModelRejected, RegistryError, ArtifactError, QueryError, DatabaseError
    ) as exc:  # fmt: skip
        print(f"loopline: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
