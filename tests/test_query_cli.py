"""``loopline query`` on an embedded store that no sink holds."""

import json

import pytest

from streams.cli import main
from streams.settings import ClickHouseSettings
from streams.store import connect
from tests.samples import load_analytics_records


@pytest.fixture
def store(clickhouse, monkeypatch):
    client = connect(clickhouse)
    load_analytics_records(client)
    client.close()
    monkeypatch.setenv("LOOPLINE_CLICKHOUSE_DSN", clickhouse.dsn.get_secret_value())
    monkeypatch.setenv("LOOPLINE_CLICKHOUSE_DATABASE", clickhouse.database)
    monkeypatch.setenv("LOOPLINE_SINK_QUERY_PORT", "0")
    return clickhouse


def run(capsys, *args):
    code = main(["query", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_names_every_canned_query(capsys):
    code, out, _ = run(capsys, "--list")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == [
        "accuracy", "timeline", "latency", "dead-letters", "labels"]  # fmt: skip


def test_a_canned_query_as_json_table_and_csv(store: ClickHouseSettings, capsys):
    code, out, _ = run(capsys, "labels", "--model", "fraud", "--format", "json")
    assert code == 0
    assert [(r["predictions"], r["outcomes"], r["coverage"]) for r in json.loads(out)] == [(20, 10, 0.5)]
    code, out, _ = run(capsys, "dead-letters", "--format", "csv")
    assert out.splitlines()[0] == "agent,reason,source_topic,letters,first,last"
    assert [line.split(",")[1:4] for line in out.splitlines()[1:]] == [
        ["corrupt", "loopline.features", "2"], ["wrong-length", "loopline.features", "1"]]  # fmt: skip
    code, out, _ = run(capsys, "latency")
    header, _, row = out.splitlines()
    assert header.split() == ["model_name", "model_version", "predictions", "p50_ms", "p95_ms", "p99_ms",
                              "queue_wait_ms", "batch_model_ms"]  # fmt: skip
    assert row.split()[:4] == ["fraud", "2", "20", "5.0"]


def test_own_sql_binds_values_and_never_pastes_them(store, capsys):
    sql = "SELECT count() AS n FROM predictions FINAL WHERE model_name = {m:String}"
    assert json.loads(run(capsys, "--sql", sql, "--param", "m=fraud", "--format", "json")[1]) == [{"n": 20}]
    injected = run(capsys, "--sql", sql, "--param", "m=fraud' OR 1=1 --", "--format", "json")[1]
    assert json.loads(injected) == [{"n": 0}]


def test_bad_sql_is_a_clear_error(store, capsys):
    code, _, err = run(capsys, "--sql", "SELECT nope FROM predictions")
    assert code == 2 and "nope" in err
