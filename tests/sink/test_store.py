"""The sink's store on embedded ClickHouse: a backfill over months lands whole."""

import pytest

from loopline.codec import Codec
from loopline.records import SourceRecord
from loopline.settings import KafkaSettings
from loopline.sink.core import SinkCore
from loopline.sink.store import Store
from loopline.sink.tables import DAY_MS
from loopline.store import connect
from tests.samples import SAMPLES, T0

DAYS = 130


@pytest.fixture
def store(clickhouse):
    store = Store(clickhouse)
    yield store
    store.close()


def backfill(kafka):
    """Predictions and labels of one event a day over 130 days, and a dead letter of each."""
    codecs = {name: Codec.load(name) for name in ("prediction", "label", "dead_letter")}
    records = []
    for day in range(DAYS):
        at = T0 - day * DAY_MS
        for topic, schema in (("predictions", "prediction"), ("labels", "label"), ("dead-letters", "dead_letter")):
            value = codecs[schema].encode(SAMPLES[schema] | {"event_id": f"e{day}", "event_time": at})
            records.append(SourceRecord(b"k", value, kafka.topic(topic), 0, day, at))
    return records


def test_a_backfill_over_more_than_a_hundred_days_is_inserted_whole(store, clickhouse):
    kafka = KafkaSettings()
    batch = SinkCore(kafka).rows(backfill(kafka))
    assert batch.dead_reasons == [] and batch.row_count == 3 * DAYS
    table, predictions = next((table, rows) for table, rows in batch.rows.items() if table.table == "predictions")
    store.insert(SinkCore(kafka).rows([]))  # opens the store and creates the tables
    client = connect(clickhouse)
    try:  # one insert of all of it is what ClickHouse refuses: the reason for one insert per day
        with pytest.raises(Exception, match="Too many partitions"):
            client.insert("predictions", predictions, column_names=list(table.columns))
    finally:
        client.close()
    store.insert(batch)
    for table in ("predictions", "labels", "dead_letters"):
        result = store.query(f"SELECT count(), uniqExact(toYYYYMMDD(event_time)) FROM {table} FINAL", {}, {})
        assert [list(row) for row in result.rows] == [[DAYS, DAYS]], table
