"""librdkafka's own log lines and error callbacks, throttled: a broker outage says so a few times.

librdkafka reports a lost broker once per connection attempt, on every client of a worker. The
filter below lets each distinct line (numbers ignored) through once a minute and counts the rest,
so an outage of minutes writes a few lines per worker instead of thousands.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from confluent_kafka import KafkaError

__all__ = ["client_callbacks", "client_log"]

client_log = log = logging.getLogger("loopline.kafka")
"""The throttled logger of everything the Kafka clients report."""
DIGITS = re.compile(r"\d+")


class Throttle(logging.Filter):
    """Lets a line through at most once per ``interval_s`` (lines that differ only in numbers count as one)."""

    def __init__(self, interval_s: float = 60.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.last: dict[str, float] = {}
        self.suppressed: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        shape = DIGITS.sub("#", record.getMessage())
        now = time.monotonic()
        if now - self.last.get(shape, float("-inf")) < self.interval_s:
            self.suppressed[shape] = self.suppressed.get(shape, 0) + 1
            return False
        self.last[shape] = now
        if skipped := self.suppressed.pop(shape, 0):
            record.msg = f"{record.getMessage()} ({skipped} more like it in the last minute)"
            record.args = ()
        return True


log.addFilter(Throttle())


def _on_error(error: KafkaError) -> None:
    log.log(logging.ERROR if error.fatal() else logging.WARNING, "kafka client: %s", error.str())


def client_callbacks() -> dict[str, Any]:
    """``logger`` and ``error_cb`` entries for a confluent-kafka client's configuration."""
    return {"logger": log, "error_cb": _on_error}
