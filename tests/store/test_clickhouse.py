import datetime as dt

import pytest
from pydantic import ValidationError

from loopline.errors import Unreachable
from loopline.kafka.broker import free_port
from loopline.settings import ClickHouseSettings
from loopline.store import ConfigError, check_dsn, check_store, connect, migrate
from loopline.store.clickhouse import migration_files

TABLES = {
    "predictions",
    "labels",
    "outcomes",
    "drift_events",
    "retrain_requests",
    "model_versions",
    "dead_letters",
}


@pytest.fixture
def client(clickhouse):
    client = connect(clickhouse)
    yield client
    client.close()


def test_migrate_twice_is_fine(client):
    assert migrate(client) == [p.stem for p in migration_files()]
    migrate(client)
    tables = {row[0] for row in client.query("SHOW TABLES").result_rows}
    assert tables == TABLES


def test_tables_are_partitioned_by_day_and_replacing(client):
    migrate(client)
    rows = client.query(
        "SELECT name, engine, partition_key FROM system.tables WHERE database = currentDatabase()"
    ).result_rows
    assert {name for name, _, _ in rows} == TABLES
    for name, engine, partition_key in rows:
        assert engine == "ReplacingMergeTree", name
        assert partition_key == "toYYYYMMDD(event_time)", name


def prediction_rows(n):
    t0 = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
    return [
        [f"e{i}", t0 + dt.timedelta(seconds=i), t0 + dt.timedelta(seconds=i, milliseconds=4), f"u{i}",
         "fraud", 1, False, [0.3, 0.7], "yes", 1.0, 0.5]
        for i in range(n)
    ]  # fmt: skip


COLUMNS = [
    "event_id", "event_time", "prediction_time", "entity_id", "model_name", "model_version", "shadow",
    "scores", "predicted_class", "queue_wait_ms", "inference_ms",
]  # fmt: skip


def test_insert_and_query_round_trip(client):
    migrate(client)
    client.insert("predictions", prediction_rows(3), column_names=COLUMNS)
    result = client.query(
        "SELECT event_id, model_version, scores FROM predictions FINAL WHERE model_name = {m:String} ORDER BY event_id",
        parameters={"m": "fraud"},
    ).result_rows
    assert [(r[0], r[1], [round(x, 3) for x in r[2]]) for r in result] == [
        ("e0", 1, [0.3, 0.7]), ("e1", 1, [0.3, 0.7]), ("e2", 1, [0.3, 0.7]),
    ]  # fmt: skip


def test_a_duplicate_insert_is_not_double_counted(client):
    migrate(client)
    rows = prediction_rows(5)
    client.insert("predictions", rows, column_names=COLUMNS)
    client.insert("predictions", rows[2:], column_names=COLUMNS)  # a retried batch
    assert client.query("SELECT count() FROM predictions FINAL").result_rows == [(5,)]
    assert client.query("SELECT uniqExact(event_id) FROM predictions").result_rows == [(5,)]


def test_an_unknown_dsn_scheme_is_refused_by_the_settings():
    with pytest.raises(ValidationError, match=r"unknown ClickHouse DSN scheme 'postgres'.*chdb://"):
        ClickHouseSettings(dsn="postgres://localhost/db")


def test_an_embedded_store_that_cant_be_created_is_a_config_error():
    with pytest.raises(ConfigError, match="can't be created"):
        check_dsn(ClickHouseSettings(dsn="chdb:///proc/loopline-store"))


def test_a_store_that_does_not_answer_is_named_without_its_password(tmp_path):
    settings = ClickHouseSettings(dsn=f"http://loopline:s3cret@127.0.0.1:{free_port()}/analytics")
    check_dsn(settings)  # nothing to say before connecting: a server may come back
    with pytest.raises(
        Unreachable, match=r"cannot open the ClickHouse store at http://127\.0\.0\.1:\d+/analytics: "
    ) as e:
        check_store(settings)
    assert "s3cret" not in str(e.value)
    check_store(ClickHouseSettings(dsn=f"chdb://{tmp_path / 'store'}"))
