"""``loopline worker sink``: every topic into its ClickHouse table, committed only once written.

A batch is inserted before its offsets are committed. While ClickHouse is unavailable the worker
retries the same batch with backoff and reads nothing more (backpressure): nothing is lost, and a
batch written twice (a crash between insert and commit, an aborted commit) collapses in the
ReplacingMergeTree tables, which queries read with FINAL: ClickHouse is outside the Kafka
transaction, so the tables are idempotent instead. The worker also serves the query endpoint, so
that ``loopline query`` works while it holds an embedded chdb store.
"""

from __future__ import annotations

import logging
import threading

import faust

from loopline.agents.app import make_app
from loopline.analytics.server import QueryServer
from loopline.kafka.loop import kafka_loop
from loopline.kafka.retry import Stopped
from loopline.metrics import SINK_FAILURES, SINK_ROWS
from loopline.records import Produced, SourceRecord, Topic
from loopline.settings import ClickHouseSettings, KafkaSettings, SinkSettings
from loopline.sink.core import SinkBatch, SinkCore
from loopline.sink.store import Store

__all__ = ["build_sink_app", "write"]

log = logging.getLogger("loopline.sink")


def build_sink_app(kafka: KafkaSettings, clickhouse: ClickHouseSettings, settings: SinkSettings) -> faust.App:
    """The Faust app of a sink worker: the batch loop and the query endpoint."""
    core, store = SinkCore(kafka), Store(clickhouse)
    stopping = threading.Event()

    def process(records: list[SourceRecord]) -> SinkBatch:
        batch = core.rows(records)
        write(store, batch, settings.max_backoff_s, stopping)
        return batch

    loop = kafka_loop(
        kafka, "sink", [Topic(t.topic) for t in core.tables.values()], process, settings.max_batch_rows,
        settings.max_wait_ms / 1000, observe=_record_metrics,
    )  # fmt: skip

    def serve(stop: threading.Event) -> None:
        server = QueryServer(store, settings) if settings.query_port else None
        if server is not None:
            server.start()
        stop.wait()
        stopping.set()
        if server is not None:
            server.stop()

    def sink(stop: threading.Event) -> None:
        try:
            loop.run(stop)
        finally:
            store.close()

    return make_app("sink", kafka, serve, sink)


def write(store: Store, batch: SinkBatch, max_backoff_s: float, stop: threading.Event) -> None:
    """Insert ``batch``, trying again with backoff for as long as it takes (or until ``stop``)."""
    backoff = 0.5
    while True:
        try:
            store.insert(batch)
            return
        except Exception as exc:  # any failure of the store: hold the batch and try again
            SINK_FAILURES.inc()
            log.warning("writing %d rows failed (%s); holding the input, next try in %.1fs", batch.row_count, exc,
                        backoff)  # fmt: skip
        if stop.wait(backoff):
            raise Stopped
        backoff = min(backoff * 2, max_backoff_s)


def _record_metrics(produced: Produced) -> None:
    assert isinstance(produced, SinkBatch)
    for table, rows in produced.rows.items():
        SINK_ROWS.labels(table.table).inc(len(rows))
