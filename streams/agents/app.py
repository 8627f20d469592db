"""The Faust app and worker every agent runs in, and :func:`run_worker`, which runs one (``loopline worker``)."""

from __future__ import annotations

import asyncio
import gc
import logging
import tempfile
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import faust
from faust.app.base import BootStrategy

from loopline.errors import ConfigError
from loopline.kafka.config import faust_credentials
from loopline.settings import KafkaSettings

if TYPE_CHECKING:
    from loopline.settings import DriftSettings, TrainerSettings

__all__ = ["AGENTS", "make_app", "run", "run_worker"]

log = logging.getLogger(__name__)

AGENTS = ("inference", "join", "drift", "sink", "trainer")
"""The agents a worker runs."""
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


def run_worker(agent: str, kafka: KafkaSettings | None = None, *, loglevel: str = "info") -> None:
    """Run one agent's worker in this process until SIGTERM or SIGINT: ``loopline worker <agent>``.

    The agent's settings are read from the environment (``LOOPLINE_*``) and checked, the brokers
    reached and the catalogue's topics found (the sink also checks that its store's DSN can work)
    before the worker starts; its metrics are served on ``LOOPLINE_METRICS_PORT``.

    Args:
        agent: one of ``inference``, ``join``, ``drift``, ``sink``, ``trainer``.
        kafka: how to reach Kafka; read from the environment when None.
        loglevel: the worker's log level (``debug``, ``info``, ``warning``, ``error``).

    Raises:
        ValueError: ``agent`` is none of :data:`AGENTS`.
        ConfigError: settings that can't work together; the topics are missing.
        Unreachable: no broker answers within ``LOOPLINE_KAFKA_CONNECT_TIMEOUT_S``.
    """
    from loopline.kafka.topics import require_topics
    from loopline.metrics import serve_metrics
    from loopline.settings import MetricsSettings

    if agent not in AGENTS:
        raise ValueError(f"no agent {agent!r}: one of {', '.join(AGENTS)}")
    kafka = kafka if kafka is not None else KafkaSettings()
    metrics = MetricsSettings()
    if kafka.commit_interval_ms >= kafka.transaction_timeout_ms:
        raise ConfigError(
            f"LOOPLINE_KAFKA_COMMIT_INTERVAL_MS ({kafka.commit_interval_ms}) must be shorter than "
            f"LOOPLINE_KAFKA_TRANSACTION_TIMEOUT_MS ({kafka.transaction_timeout_ms}): the broker would abort "
            "every transaction that lasts that long"
        )
    build = _builder(agent, kafka)
    require_topics(kafka)
    app = build()
    serve_metrics(metrics)
    run(app, loglevel=loglevel)


def _builder(agent: str, kafka: KafkaSettings) -> Callable[[], faust.App]:
    """The agent's app, its settings read and checked (an agent's module is imported only when it runs).

    Raises:
        ConfigError: settings that can't work: a bad detector, an unknown model family, a trainer
            wait the group would cut, an embedded store that can't be written.
    """
    from loopline import settings

    if agent == "inference":
        from loopline.agents.inference import build_inference_app

        return partial(build_inference_app, kafka, settings.InferenceSettings(), settings.RegistrySettings())
    if agent == "join":
        from loopline.agents.join import build_join_app

        return partial(build_join_app, kafka, settings.JoinSettings(), settings.StateSettings())
    if agent == "drift":
        from loopline.agents.drift import build_drift_app

        drift = settings.DriftSettings()
        _check_detectors(drift)
        return partial(build_drift_app, kafka, drift, settings.StateSettings())
    if agent == "sink":
        from loopline.agents.sink import build_sink_app
        from loopline.store import check_dsn

        store, sink = settings.ClickHouseSettings(), settings.SinkSettings()
        check_dsn(store)  # a DSN that can't work stops it here; a store that is down is waited for, input held
        return partial(build_sink_app, kafka, store, sink)
    from loopline.agents.trainer import build_trainer_app

    trainer = settings.TrainerSettings()
    _check_trainer(trainer, kafka)
    # the checks every candidate passes, on the CPU (a GPU is inference's)
    checks = settings.InferenceSettings(device="cpu")
    return partial(build_trainer_app, kafka, trainer, settings.RegistrySettings(), settings.StateSettings(), checks)


def _check_detectors(drift: DriftSettings) -> None:
    """Build each drift detector once with its parameters, so that a bad one stops the worker at start, by name.

    Raises:
        ConfigError: a detector does not take its parameters.
    """
    from loopline.drift.detectors import make_detector

    prefix = str(drift.model_config.get("env_prefix", ""))
    for kind in ("concept", "covariate", "prediction"):
        try:
            make_detector(getattr(drift, f"{kind}_detector"), getattr(drift, f"{kind}_params"), kind == "concept")
        except ValueError as exc:
            raise ConfigError(f"bad setting {f'{prefix}{kind}_params'.upper()}: {exc}") from None


def _check_trainer(trainer: TrainerSettings, kafka: KafkaSettings) -> None:
    """Refuse a trainer that could not work: a family that is not installed, or a wait the group would cut.

    Raises:
        ConfigError: which setting to change, and why.
    """
    from loopline.models.families import FAMILIES
    from loopline.models.plugins import plugin_names

    known = [*FAMILIES, *plugin_names()]
    unknown = [name for name in trainer.family_names if name not in known]
    if unknown:
        raise ConfigError(f"bad setting LOOPLINE_TRAINER_FAMILIES={trainer.families!r}: families must name some "
                          f"of {', '.join(known)}, not {', '.join(unknown)}")  # fmt: skip
    if trainer.wait_minutes * 60_000 >= kafka.max_poll_interval_ms:
        raise ConfigError(
            f"LOOPLINE_TRAINER_WAIT_MINUTES ({trainer.wait_minutes:g}) must be shorter than "
            f"LOOPLINE_KAFKA_MAX_POLL_INTERVAL_MS ({kafka.max_poll_interval_ms} ms): a training that waits "
            "longer than that is taken off its requests by a rebalance"
        )
