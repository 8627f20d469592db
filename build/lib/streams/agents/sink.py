"""``loopline worker sink``: every topic into its ClickHouse table, committed only once written.

A batch is inserted before its offsets are committed. While ClickHouse is unavailable the worker
retries the same batch with backoff and reads nothing more (backpressure): nothing is lost, and a
batch written twice (a crash between insert and commit) collapses in the ReplacingMergeTree
tables, which queries read with FINAL. The worker also serves the query endpoint, so that
``loopline query`` works while it holds an embedded chdb store.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import faust

from streams.agents.app import make_app
from streams.agents.batches import BatchConsumer, deliver, make_producer
from streams.analytics.server import QueryServer
from streams.metrics import BATCH_SIZE, DEAD_LETTERS, EVENTS_IN, SINK_FAILURES, SINK_ROWS
from streams.settings import ClickHouseSettings, KafkaSettings, SinkSettings
from streams.sink.core import SinkBatch, SinkCore
from streams.sink.store import Store

__all__ = ["build_sink_app"]

log = logging.getLogger("loopline.sink")


def build_sink_app(kafka: KafkaSettings, clickhouse: ClickHouseSettings, settings: SinkSettings) -> faust.App:
    """The Faust app of a sink worker."""
    app = make_app("sink", kafka)

    @app.task
    async def sink() -> None:
        core, store = SinkCore(kafka), Store(clickhouse)
        server = QueryServer(store, settings.query_host, settings.query_port) if settings.query_port else None
        if server is not None:
            server.start()
        producer = make_producer(kafka)
        await producer.start()
        try:
            consumer = BatchConsumer(
                kafka, core.topics, f"{kafka.topic_prefix}sink", settings.max_batch_rows, settings.max_wait_ms / 1000
            )
            async with consumer:
                async for records in consumer.batches():
                    batch = core.rows(records)
                    await write(store, batch, settings.max_backoff_s)
                    dead = kafka.topic("dead-letters")
                    await deliver(producer, [(dead, key, value) for key, value in batch.dead_letters])
                    await consumer.commit(records)
                    _record_metrics(len(records), batch)
        finally:
            await producer.stop()
            if server is not None:
                server.stop()
            store.close()

    return app


async def write(store: Store, batch: SinkBatch, max_backoff_s: float) -> None:
    """Insert ``batch``, trying again with backoff for as long as it takes."""
    loop = asyncio.get_running_loop()
    backoff = 0.5
    while True:
        try:
            await loop.run_in_executor(None, store.insert, batch)
            return
        except Exception as exc:  # any failure of the store: hold the batch and try again
            SINK_FAILURES.inc()
            log.warning("writing %d rows failed (%s); holding the input, next try in %.1fs", len(batch), exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)


def _record_metrics(size: int, batch: SinkBatch) -> None:
    EVENTS_IN.labels("sink").inc(size)
    BATCH_SIZE.labels("sink").observe(size)
    for table, rows in batch.rows.items():
        SINK_ROWS.labels(table.table).inc(len(rows))
    for reason, count in Counter(batch.dead_reasons).items():
        DEAD_LETTERS.labels("sink", reason).inc(count)
