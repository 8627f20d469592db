"""The Faust app every agent runs in, and reliable delivery of an agent's outputs."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Sequence

import faust

from streams.kafka.config import faust_credentials
from streams.settings import KafkaSettings

__all__ = ["deliver", "make_app", "run"]

log = logging.getLogger(__name__)

Outgoing = tuple[str, bytes | None, bytes]


def make_app(agent: str, kafka: KafkaSettings) -> faust.App:
    """A Faust app for one agent: consumer group ``<topic prefix><agent>``, raw bytes in and out.

    Records are decoded inside the agents (a decode error in Faust's own deserializer would kill
    the stream), topics are created by ``loopline topics create`` rather than declared by Faust,
    and every send waits for all in-sync replicas.
    """
    return faust.App(
        f"{kafka.topic_prefix}{agent}",
        broker=[f"kafka://{server}" for server in kafka.bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(kafka),
        broker_client_id=f"{kafka.client_id}-{agent}",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_request_size=kafka.max_message_bytes,
        datadir=tempfile.mkdtemp(prefix=f"loopline-{agent}-"),
        # On shutdown, don't wait for in-flight batches: unacked records are re-read after restart.
        stream_wait_empty=False,
    )


async def deliver(app: faust.App, records: Sequence[Outgoing], max_backoff_s: float = 5.0) -> None:
    """Send ``records`` and return once the broker acknowledged every one.

    Failed sends are retried with backoff for as long as it takes: the agent holds its batch (and
    its offsets stay uncommitted) rather than move on without its outputs.
    """
    pending = list(records)
    backoff = 0.1
    while pending:
        futures = [await app.producer.send(topic, key, value, None, None, None) for topic, key, value in pending]
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = [record for record, result in zip(pending, results, strict=True) if isinstance(result, BaseException)]
        if failed:
            error = next(r for r in results if isinstance(r, BaseException))
            log.warning("%d of %d sends failed (%r); retrying in %.1fs", len(failed), len(pending), error, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)
        pending = failed


def run(app: faust.App, loglevel: str = "info") -> None:
    """Run ``app`` in this process until SIGTERM or SIGINT (then it commits and stops cleanly)."""
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
