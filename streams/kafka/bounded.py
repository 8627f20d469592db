"""A librdkafka transactional call, bounded in time and not waited for once its producer lost a broker connection.

librdkafka's ``send_offsets_to_transaction`` can block past its timeout, for good, when the group
coordinator went away during the transaction (librdkafka issues 5456 and 5511). Seen here after a
broker restart: the restarted broker briefly left the metadata, the producer decommissioned its
handle (``Handle is terminating in state INIT``), which stayed cached as the group coordinator,
and the next transaction's ``send_offsets_to_transaction`` waited on that handle until the bound,
15 s after the broker answered again. So a producer that lost a broker connection is not waited
for: the caller replaces it (a new one with the same transactional id fences the old one and
aborts its transaction; it starts once the broker answers), and one that lost a connection
between two transactions is replaced before the next begins. ``_ALL_BROKERS_DOWN`` alone is not
enough: a producer whose handles were never connected (sparse connections) does not count them,
and did not report it in a restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaError, Producer

__all__ = ["CALL_S", "LOST", "Unanswered", "bounded"]

CALL_S = 10  # librdkafka's own timeout of a transactional call
GRACE_S = 5  # how much longer a call may take before it is taken to hang
WATCH_S = 0.05  # how often a bounded call's wait looks whether its producer lost a broker connection
LOST = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN})
"""Errors a client reports when it lost a broker connection."""


class Unanswered(Exception):
    """A librdkafka call ran past its own timeout, or was left when its producer lost a broker connection."""


def bounded(
    call: Callable[[], None], producer: Producer, outage: threading.Event, limit_s: float = CALL_S + GRACE_S
) -> None:
    """``call()`` in a thread of its own, waited for ``limit_s`` at most, and no longer once ``outage`` is
    set (``producer`` reported a lost broker connection, :data:`LOST`: its error callbacks are
    served by polling it while the call runs, as a transactional call does not).

    Raises:
        Unanswered: the call did not return in time, or the producer lost a connection meanwhile.
    """
    failure: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="librdkafka-call", daemon=True)
    thread.start()
    deadline = time.monotonic() + limit_s
    while thread.is_alive() and not outage.is_set() and time.monotonic() < deadline:
        thread.join(WATCH_S)
        producer.poll(0)
    if thread.is_alive():
        if outage.is_set():
            raise Unanswered("it lost a broker connection during a transactional call")
        raise Unanswered(f"it did not answer in {limit_s:.0f}s")
    if failure:
        raise failure[0]
