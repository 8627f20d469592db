"""Running loopline workers as real processes in tests, and reading what they produce."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loopline.codec import Codec
from loopline.kafka.broker import free_port
from loopline.kafka.clients import read_to_end, read_topic
from loopline.metrics import read_metric
from loopline.settings import KafkaSettings


class Worker:
    """A ``loopline worker <agent>`` process with its own metrics port and log file."""

    def __init__(self, agent: str, kafka: KafkaSettings, log_dir: Path, env: dict[str, str]) -> None:
        self.metrics_port = free_port()
        self.log = log_dir / f"{agent}-{self.metrics_port}.log"
        environment = os.environ | {
            "LOOPLINE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "LOOPLINE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
            "LOOPLINE_KAFKA_PARTITIONS": str(kafka.partitions),
            "LOOPLINE_METRICS_PORT": str(self.metrics_port),
            "LOOPLINE_METRICS_HOST": "127.0.0.1",
            "LOOPLINE_STATE_DIR": str(log_dir / "state"),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "loopline.cli", "worker", agent, "--loglevel", "info"],
                env=environment, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels include ``labels`` (0 if absent)."""
        return read_metric(self.metrics_port, name, **labels)

    def stop(self) -> None:
        """SIGTERM, then wait for a clean exit (SIGKILL after 30 s)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def owns(self) -> list[str]:
        """The partitions its last assignment gave it (from its log)."""
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if ": assigned " in line]
        return lines[-1].split(": assigned ", 1)[1].strip().split(", ") if lines else []

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def worker(agent: str, kafka: KafkaSettings, log_dir: Path, **env: str) -> Iterator[Worker]:
    """A running worker, stopped on exit; its log is printed when the test fails."""
    running = Worker(agent, kafka, log_dir, env)
    try:
        yield running
    except BaseException:
        print(f"--- {agent} worker log ---\n{running.tail()}")
        raise
    finally:
        running.stop()


def wait_for(condition, timeout_s: float = 60.0, what: str = "condition"):
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout_s``.

    A connection error (a worker's metrics endpoint not up yet) counts as not yet.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = condition()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def decoded(kafka: KafkaSettings, topic: str, schema: str) -> list[dict]:
    """Every record of a catalogue topic so far, decoded."""
    codec = Codec.load(schema)
    return [codec.decode(m.value()) for m in read_to_end(kafka, kafka.topic(topic))]


def wait_records(kafka: KafkaSettings, topic: str, schema: str, count: int, timeout_s: float = 60.0) -> list[dict]:
    """Wait until ``topic`` holds at least ``count`` records, then return all of them decoded."""
    read_topic(kafka, kafka.topic(topic), until=lambda m: len(m) >= count, timeout_s=timeout_s)
    return decoded(kafka, topic, schema)
