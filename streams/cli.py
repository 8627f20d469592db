"""The ``loopline`` command line.

A configuration or connection error (a bad setting, a broker or store that isn't there, missing
topics, a refused model or query) ends a command or a starting worker with one line on stderr and
exit code 2; :func:`main` is the one place that turns them into that line.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from clickhouse_connect.driver.exceptions import ClickHouseError
from confluent_kafka import KafkaError, KafkaException
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError

from loopline.analytics.queries import QueryError
from loopline.errors import ConfigError, Unreachable
from loopline.inference.loader import ModelRejected
from loopline.kafka.broker import Broker, BrokerError, fetch_classpath, local_kafka_settings
from loopline.models import ArtifactError, RegistryError
from loopline.models_cli import add_models_parser
from loopline.paths import CACHE_DIR
from loopline.query_cli import add_query_parser
from loopline.settings import (
    BrokerSettings,
    ClickHouseSettings,
    KafkaSettings,
    all_settings_classes,
)

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
        classpath = fetch_classpath(CACHE_DIR / "kafka", refresh=True)
        print(f"resolved {len(classpath.split(':'))} jars")
        return 0
    broker = Broker(_broker_settings(args))
    if args.action == "start":
        servers = broker.start()
        print(f"kafka running on {servers} (data and log in {broker.data_dir})")
        print(f"export LOOPLINE_KAFKA_BOOTSTRAP_SERVERS={servers}")
        if os.environ.get("LOOPLINE_KAFKA_BOOTSTRAP_SERVERS", servers) != servers:
            print(f"note: LOOPLINE_KAFKA_BOOTSTRAP_SERVERS is set to {os.environ['LOOPLINE_KAFKA_BOOTSTRAP_SERVERS']} "
                  "here: other commands run in this shell go there, not to this broker", file=sys.stderr)  # fmt: skip
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
    from loopline.kafka.topics import create_topics

    kafka = local_kafka_settings()
    _ready(kafka, topics=False)
    for name, state in create_topics(kafka).items():
        print(f"{name}: {state}")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from loopline.store import check_store, connect, migrate

    clickhouse = ClickHouseSettings()
    check_store(clickhouse)
    client = connect(clickhouse)
    try:
        for name in migrate(client):
            print(f"applied {name}")
    finally:
        client.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from loopline.demo import run_demo
    from loopline.settings import DemoSettings, RegistrySettings

    overrides = {"events": args.events} if args.events is not None else {}
    broker = BrokerSettings()
    kafka = local_kafka_settings(broker)
    run_demo(kafka, broker, ClickHouseSettings(), RegistrySettings(), DemoSettings(**overrides))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from loopline.reference import configuration_reference

    print(configuration_reference(), end="")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from loopline.agents.app import run_worker

    run_worker(args.agent, local_kafka_settings(), loglevel=args.loglevel)
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    import time
    import uuid

    from loopline.codec import Codec
    from loopline.kafka.clients import send_all
    from loopline.trainer.window import start_offsets

    kafka = local_kafka_settings()
    _ready(kafka, topics=True)
    reason = args.reason
    if args.since is not None:
        where = f"offset {args.since}" if isinstance(args.since, int) else args.since.isoformat()
        reason = f"{args.reason} (on the outcomes since {where})"
    request = {
        "event_id": str(uuid.uuid4()),
        "event_time": int(time.time() * 1000),
        "model_name": args.model,
        "reason": reason,
        "requested_by": "cli",
        "evidence": None,
        "since": None if args.since is None else start_offsets(kafka, args.since),
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
    retrain.add_argument("--since", type=_since, metavar="OFFSET|TIME",
                         help="train only on outcomes from this offset of the model's outcomes partition, or "
                              "written at or after this ISO time (e.g. 2026-11-24T09:30Z)")  # fmt: skip
    retrain.set_defaults(func=cmd_retrain)

    config = sub.add_parser("config", help="print every LOOPLINE_* setting: the configuration reference, in markdown")
    config.set_defaults(func=cmd_config)

    demo = sub.add_parser("demo", help="the whole loop on a drifting stream: live progress, then a report")
    demo.add_argument("--events", type=int, help="feature events in the stream (LOOPLINE_DEMO_EVENTS)")
    demo.set_defaults(func=cmd_demo)
    return parser


def _since(text: str) -> int | datetime:
    """``--since``: an offset, or an ISO time (UTC unless it says otherwise)."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an offset nor an ISO time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _ready(kafka: KafkaSettings, *, topics: bool) -> None:
    """Check the brokers (and the topics) once a command's or worker's settings are read, before its work.

    Without it an absent broker means librdkafka retrying forever (a worker) or a long wait and a
    traceback (a command).

    Raises:
        Unreachable: no broker answers within ``LOOPLINE_KAFKA_CONNECT_TIMEOUT_S``.
        ConfigError: ``topics`` is set and the catalogue's topics are not there yet.
    """
    from loopline.kafka.config import reach
    from loopline.kafka.topics import require_topics

    if topics:
        require_topics(kafka)
    else:
        reach(kafka)


def _setting_name(cls: type[BaseSettings], field: str) -> str:
    return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def _invalid_settings(exc: ValidationError) -> str:
    """A settings error as the variables to fix, e.g. ``LOOPLINE_INFERENCE_MAX_BATCH_SIZE='0': ...``."""
    cls = {c.__name__: c for c in all_settings_classes()}.get(exc.title)
    problems = []
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        field = str(error["loc"][0]) if error["loc"] else None
        if cls is None:
            where = ".".join(str(part) for part in error["loc"]) or exc.title
        elif field is None or field not in cls.model_fields:
            where = f"{exc.title} ({cls.model_config.get('env_prefix', '')}*)"
        else:
            where = _setting_name(cls, field)
            secret = "Secret" in str(cls.model_fields[field].annotation) or cls.model_config.get("hide_input_in_errors")
            if isinstance(error["input"], str | int | float) and not secret:
                where += f"={error['input']!r}"
        problems.append(f"{where}: {message}")
    return "bad setting " + "; ".join(problems)


def _unparsable_setting(exc: SettingsError) -> str:
    """pydantic-settings names the field only; name the variable that is set, and why it doesn't parse."""
    found = re.search(r'field "([^"]+)"', str(exc))
    field = found.group(1) if found else ""
    names = [_setting_name(c, field) for c in all_settings_classes() if field in c.model_fields]
    variables = [name for name in names if name in {key.upper() for key in os.environ}] or names or [field]
    cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
    return f"bad setting {' or '.join(variables)}: not valid JSON{cause}"


def _kafka_problem(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    if error is None:
        return f"Kafka: {exc}"
    if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
        return f"Kafka: {error.str()}: run `loopline topics create` first"
    if error.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE):
        return f"cannot reach Kafka: {error.str()}"
    return f"Kafka: {error.name()}: {error.str()}"


def _one_line(exc: Exception) -> str:
    """What went wrong, on one line."""
    if isinstance(exc, ValidationError):
        text = _invalid_settings(exc)
    elif isinstance(exc, SettingsError):
        text = _unparsable_setting(exc)
    elif isinstance(exc, KafkaException):
        text = _kafka_problem(exc)
    else:
        text = str(exc)
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``loopline`` console script.

    Returns:
        The command's exit code; 2 after a configuration or connection error, reported as one line on stderr.
    """
    warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)  # the refusal that follows says it
    try:
        args = build_parser().parse_args(argv)
        func: Callable[[argparse.Namespace], int] = args.func
        if args.command == "models":  # every models command starts by reading the model-versions topic
            _ready(local_kafka_settings(), topics=True)
        return func(args)
    except (
        ValidationError, SettingsError, ConfigError, Unreachable, KafkaException, BrokerError, ModelRejected,
        RegistryError, ArtifactError, QueryError, ClickHouseError,
    ) as exc:  # fmt: skip
        print(f"loopline: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
