"""The Faust app and worker every agent runs in."""

from __future__ import annotations

import tempfile

import faust
from faust.app.base import BootStrategy

from streams.kafka.config import faust_credentials
from streams.settings import KafkaSettings

__all__ = ["make_app", "run"]


class TaskBoot(BootStrategy):
    """Start the worker's services and tasks, without Faust's own consumer and producer.

    loopline's agents consume in batches with their own clients (``streams.agents.batches``).
    """

    enable_kafka_consumer = False
    enable_kafka_producer = False


def make_app(agent: str, kafka: KafkaSettings) -> faust.App:
    """A Faust app for one agent, with the id ``<topic prefix><agent>-worker``.

    The agent's work runs as app tasks; the web server is off (metrics have their own endpoint).
    """
    app = faust.App(
        f"{kafka.topic_prefix}{agent}-worker",
        broker=[f"kafka://{server}" for server in kafka.bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(kafka),
        broker_client_id=f"{kafka.client_id}-{agent}",
        web_enabled=False,
        datadir=tempfile.mkdtemp(prefix=f"loopline-{agent}-"),
    )
    app.boot_strategy = TaskBoot(app)
    return app


def run(app: faust.App, loglevel: str = "info") -> None:
    """Run ``app`` in this process until SIGTERM or SIGINT, then stop its tasks cleanly."""
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    # Faust's terminal spinner sets the root logger to DEBUG so that it can spin on every record:
    # every debug line of every library would then be formatted (a quarter of a relay's CPU).
    worker.spinner = None
    worker.execute_from_commandline()
