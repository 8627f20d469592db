"""``loopline worker sink``: every topic into its ClickHouse table, committed only once written.

A batch's rows are added to the :class:`~loopline.sink.base.Sink` and flushed before its offsets are
committed. While a flush fails (ClickHouse unavailable) the worker flushes again with backoff and
reads nothing more (backpressure): nothing is lost, and a batch written twice (a crash between
flush and commit, an aborted commit) collapses in the ReplacingMergeTree tables, which queries
read with FINAL: ClickHouse is outside the Kafka transaction, so the tables are idempotent instead.
The worker also serves the query endpoint, so that ``loopline query`` works while it holds an
embedded chdb store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import faust

from loopline.agents.app import make_app
from loopline.analytics.server import QueryServer
from loopline.kafka.loop import kafka_loop
from loopline.kafka.retry import Stopped
from loopline.metrics import SINK_FAILURES, SINK_ROWS
from loopline.records import Produced, SourceRecord, Topic
from loopline.settings import ClickHouseSettings, KafkaSettings, SinkSettings
from loopline.sink.base import Sink
from loopline.sink.clickhouse import ClickHouseSink
from loopline.sink.core import SinkBatch, SinkCore

__all__ = ["build_sink_app", "flush", "writer"]

log = logging.getLogger("loopline.sink")


def build_sink_app(kafka: KafkaSettings, clickhouse: ClickHouseSettings, settings: SinkSettings) -> faust.App:
    """The Faust app of a sink worker: the batch loop into ClickHouse and the query endpoint."""
    core, sink = SinkCore(kafka), ClickHouseSink(clickhouse)
    stopping = threading.Event()
    loop = kafka_loop(
        kafka, "sink", [Topic(t.topic) for t in core.tables.values()], writer(core, sink, settings.max_backoff_s, stopping),
        settings.max_batch_rows, settings.max_wait_ms / 1000, observe=_record_metrics,
    )  # fmt: skip

    def serve(stop: threading.Event) -> None:
        server = QueryServer(sink, settings) if settings.query_port else None
        if server is not None:
            server.start()
        stop.wait()
        stopping.set()
        if server is not None:
            server.stop()

    def run(stop: threading.Event) -> None:
        try:
            loop.run(stop)
        finally:
            sink.close()

    return make_app("sink", kafka, serve, run)


def writer(
    core: SinkCore, sink: Sink, max_backoff_s: float, stop: threading.Event
) -> Callable[[list[SourceRecord]], SinkBatch]:
    """The sink agent's core: a batch's records decoded into rows, added to ``sink`` and flushed
    (see :func:`flush`) before the batch loop commits them."""

    def process(records: list[SourceRecord]) -> SinkBatch:
        batch = core.rows(records)
        for table, rows in batch.rows.items():
            sink.add(table, rows)
        flush(sink, batch.row_count, max_backoff_s, stop)
        return batch

    return process


def flush(sink: Sink, rows: int, max_backoff_s: float, stop: threading.Event) -> None:
    """Flush ``sink`` (holding ``rows`` rows), trying again with backoff for as long as it takes.

    Raises:
        Stopped: ``stop`` was set before a flush succeeded (the batch is not committed).
    """
    backoff = 0.5
    while True:
        try:
            sink.flush()
            return
        except Exception as exc:  # any failure of the store: hold the batch and try again
            SINK_FAILURES.inc()
            log.warning("writing %d rows failed (%s); holding the input, next try in %.1fs", rows, exc, backoff)
        if stop.wait(backoff):
            raise Stopped
        backoff = min(backoff * 2, max_backoff_s)


def _record_metrics(produced: Produced) -> None:
    assert isinstance(produced, SinkBatch)
    for table, rows in produced.rows.items():
        SINK_ROWS.labels(table.table).inc(len(rows))
