"""Calls to the broker that a worker makes again while the broker is away, and how a stop ends them."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException

from loopline.kafka.noise import client_log

__all__ = ["Stopped", "until_answered"]

T = TypeVar("T")
RETRY_S = 1.0  # pause between two tries of a call the broker could not answer

log = logging.getLogger(__name__)


class Stopped(Exception):
    """The worker was asked to stop while a batch waited for the broker; the batch is not committed."""


def until_answered(call: Callable[[], T], what: str, stop: threading.Event | None) -> T:
    """``call()``, made again while it fails with an error that a retry may fix (the broker is away).

    A call that timed out is made again whether or not the client marks the error retriable: the
    consumer's ``committed`` does not, and a timeout there (a broker that had just restarted did
    not answer for 30 s) would otherwise end the worker.

    Raises:
        KafkaException: an error no retry fixes (fatal, or one that needs the transaction aborted).
        Stopped: ``stop`` was set meanwhile.
    """
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0]
            if error.fatal() or error.txn_requires_abort():
                raise
            if not error.retriable() and error.code() != KafkaError._TIMED_OUT:
                raise
            client_log.warning("%s: %s; trying again", what, error.str())
        if stop is not None and stop.wait(RETRY_S):
            raise Stopped
        if stop is None:
            time.sleep(RETRY_S)
