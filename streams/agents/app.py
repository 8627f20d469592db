"""The Faust app and worker every agent runs in."""

from __future__ import annotations

import asyncio
import gc
import logging
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import faust
from faust.app.base import BootStrategy

from loopline.kafka.config import faust_credentials
from loopline.settings import KafkaSettings

__all__ = ["make_app", "run"]

log = logging.getLogger(__name__)

Body = Callable[[threading.Event], None]
"""What a worker runs: a blocking function that returns once its stop event is set."""
GC_THRESHOLDS = (50_000, 20, 20)
"""The cycle collector's generation thresholds in a worker (Python's are 700, 10, 10)."""


class TaskBoot(BootStrategy):
    """Start the worker's services and tasks, without Faust's own consumer and producer.

    loopline's agents consume in batches with their own clients (``loopline.kafka.loop``).
    """

    enable_kafka_consumer = False
    enable_kafka_producer = False


def make_app(agent: str, kafka: KafkaSettings, *bodies: Body) -> faust.App:
    """A Faust app for one agent, with the id ``<topic prefix><agent>-worker``, running ``bodies``.

    Each body (a batch loop, a version follower) runs in a thread of its own, started as an app
    task and told to stop when the worker stops. A body that fails stops the worker with the error,
    so that its supervisor restarts it. The web server is off (metrics have their own endpoint).
    """
    app = faust.App(
        f"{kafka.topic_prefix}{agent}-worker",
        broker=[f"kafka://{server}" for server in kafka.bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(kafka),
        broker_client_id=f"{kafka.client_id}-{agent}",
        web_enabled=False,
        datadir=Path(tempfile.gettempdir()) / "loopline-faust",  # Faust keeps no table here: one dir serves all
    )
    app.boot_strategy = TaskBoot(app)
    for body in bodies:
        app.task(_in_thread(app, body))
    return app


def _in_thread(app: faust.App, body: Body) -> Callable[[], object]:
    async def task() -> None:
        stop = threading.Event()
        done = asyncio.get_running_loop().run_in_executor(None, body, stop)
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            stop.set()
            await done
            raise
        except Exception as exc:
            log.exception("%s failed; stopping the worker", getattr(body, "__qualname__", body))
            await app.crash(exc)

    task.__name__ = task.__qualname__ = getattr(body, "__qualname__", "body").replace(".", "_")
    return task


def run(app: faust.App, loglevel: str = "info") -> None:
    """Run ``app`` in this process until SIGTERM or SIGINT, then stop its tasks cleanly."""
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    # Faust's terminal spinner sets the root logger to DEBUG so that it can spin on every record:
    # every debug line of every library would then be formatted (a quarter of a relay's CPU).
    worker.spinner = None
    # A batch allocates a few tracked objects per record (records, decoded dicts), so with the
    # default thresholds the collector runs every 700 of them and keeps rescanning what the worker
    # holds for good (modules, the app, its clients): two fifths of the drift worker's throughput
    # (docs/benchmarks.md). What exists now is left out of collections; the young generation is
    # collected every 50,000 allocations.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    worker.execute_from_commandline()
