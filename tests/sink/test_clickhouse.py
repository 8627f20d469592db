"""Sinks: every implementation through the same checks (rows written at flush, kept through a failed
one), and the ClickHouse sink on embedded ClickHouse: a backfill over months lands whole."""

import pytest

from loopline import ClickHouseSink, Sink
from loopline.codec import Codec
from loopline.records import SourceRecord
from loopline.settings import KafkaSettings
from loopline.sink.core import SinkCore
from loopline.sink.tables import DAY_MS
from loopline.store import connect
from loopline.testing import MemorySink
from tests.samples import SAMPLES, T0, TOPIC_SCHEMA, analytics_records

DAYS = 130
TABLES = {"predictions": "predictions", "labels": "labels", "outcomes": "outcomes", "dead-letters": "dead_letters"}
"""Topics of the analytics records and the tables the sink writes them to."""


def batch_of(by_topic):
    """The sink core's rows of records (by topic, unprefixed)."""
    records = [
        SourceRecord(b"k", Codec.load(TOPIC_SCHEMA[topic]).encode(row), topic, 0, offset, 0)
        for topic, rows in by_topic.items()
        for offset, row in enumerate(rows)
    ]
    return SinkCore(KafkaSettings(topic_prefix="")).rows(records)


class ClickHouseCase:
    """The ClickHouse sink, its rows counted as queries read them (FINAL)."""

    def __init__(self, clickhouse):
        self.sink, self.clickhouse = ClickHouseSink(clickhouse), clickhouse

    def written(self, table):
        return self.sink.query(f"SELECT count() FROM {table} FINAL", {}, {}).rows[0][0]

    def command(self, sql):
        client = connect(self.clickhouse)
        try:
            client.command(sql)
        finally:
            client.close()

    def fail_next_flush(self):
        self.command("RENAME TABLE labels TO labels_away")  # the sink's next insert finds no table

    def recover(self):
        self.command("RENAME TABLE labels_away TO labels")

    def close(self):
        self.sink.close()


class MemoryCase:
    """The in-memory sink of ``loopline.testing``."""

    def __init__(self, clickhouse):
        self.sink = MemorySink()

    def written(self, table):
        return len(self.sink.rows.get(table, []))

    def fail_next_flush(self):
        self.sink.failures = self.sink.flushes + 1

    def recover(self):
        pass

    def close(self):
        pass


@pytest.fixture(params=[ClickHouseCase, MemoryCase], ids=["clickhouse", "memory"])
def case(request, clickhouse):
    case = request.param(clickhouse)
    yield case
    case.close()


def add(sink: Sink, batch):
    for table, rows in batch.rows.items():
        sink.add(table, rows)


def test_rows_are_written_at_flush_and_a_failed_flush_keeps_them_for_the_next(case):
    assert isinstance(case.sink, Sink)
    records = analytics_records()
    add(case.sink, batch_of(records))
    case.sink.flush()
    written = {table: case.written(table) for table in TABLES.values()}
    assert written == {table: len(records[topic]) for topic, table in TABLES.items()}
    add(case.sink, batch_of({"labels": [SAMPLES["label"] | {"event_id": f"late-{i}"} for i in range(3)]}))
    assert case.written("labels") == len(records["labels"])  # added, not written yet
    case.fail_next_flush()
    with pytest.raises(Exception):  # noqa: B017 - whatever the store raises
        case.sink.flush()
    case.recover()
    case.sink.flush()  # the rows of the failed flush
    assert case.written("labels") == len(records["labels"]) + 3
    case.sink.flush()  # nothing left to write
    assert case.written("labels") == len(records["labels"]) + 3


def backfill():
    """Predictions and labels of one event a day over 130 days, and a dead letter of each."""
    return batch_of({
        topic: [SAMPLES[TOPIC_SCHEMA[topic]] | {"event_id": f"e{day}", "event_time": T0 - day * DAY_MS}
                for day in range(DAYS)]
        for topic in ("predictions", "labels", "dead-letters")
    })  # fmt: skip


def test_a_backfill_over_more_than_a_hundred_days_is_inserted_whole(clickhouse):
    batch = backfill()
    assert batch.dead_reasons == [] and batch.row_count == 3 * DAYS
    table, predictions = next((table, rows) for table, rows in batch.rows.items() if table.table == "predictions")
    sink = ClickHouseSink(clickhouse)
    try:
        sink.flush()  # opens the store and creates the tables
        client = connect(clickhouse)
        try:  # one insert of all of it is what ClickHouse refuses: the reason for one insert per day
            with pytest.raises(Exception, match="Too many partitions"):
                client.insert("predictions", predictions, column_names=list(table.columns))
        finally:
            client.close()
        add(sink, batch)
        sink.flush()
        for name in ("predictions", "labels", "dead_letters"):
            result = sink.query(f"SELECT count(), uniqExact(toYYYYMMDD(event_time)) FROM {name} FINAL", {}, {})
            assert [list(row) for row in result.rows] == [[DAYS, DAYS]], name
    finally:
        sink.close()
