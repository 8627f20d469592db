"""``loopline query`` on an embedded store, opened here or through a sink's query endpoint."""

import json
import math

import pytest

from streams.analytics.queries import DEFAULTS, QUERIES, QueryError, one_statement
from streams.analytics.server import QueryServer, ask
from streams.cli import main
from streams.kafka.broker import free_port
from streams.settings import ClickHouseSettings, SinkSettings
from streams.sink.store import Store
from streams.store import connect
from tests.samples import SAMPLES, load_analytics_records, write_records


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
        "accuracy", "timeline", "latency", "dead-letters", "ab", "labels"]  # fmt: skip


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


def test_the_ab_report_on_a_known_dataset(store, capsys):
    code, out, _ = run(capsys, "ab", "--model", "fraud", "--format", "json")
    serving, shadow = json.loads(out)
    assert code == 0 and (serving["model_version"], serving["arm"], shadow["model_version"], shadow["arm"]) == (
        2, "served", 3, "shadow")  # fmt: skip
    # 7 of 10 served outcomes right: 0.7 ± 1.96 standard errors; the reference arm has no difference.
    half = 1.96 * math.sqrt(0.7 * 0.3 / 10)
    assert (serving["outcomes"], serving["accuracy"], serving["reference_arm"]) == (10, 0.7, True)
    assert (serving["accuracy_low"], serving["accuracy_high"]) == (round(0.7 - half, 4), round(0.7 + half, 4))
    assert serving["difference"] is None and serving["p50_ms"] == 5.0
    # The shadow arm on the 5 events both scored: right on 4, the serving one on 5; differences
    # (0, 0, 0, 0, -1): mean -0.2, standard error 0.2, z = -1.
    assert (shadow["outcomes"], shadow["accuracy"], shadow["difference"], shadow["compared"]) == (
        5,
        0.8,
        -0.2,
        "paired",
    )
    assert shadow["p_value"] == round(math.erfc(1 / math.sqrt(2)), 4)


def test_the_ab_report_compares_a_canary_with_the_serving_arm_on_their_own_entities(store, capsys):
    client = connect(store)
    outcomes = [SAMPLES["outcome"] | {"model_name": "shop", "event_id": f"s{i}", "model_version": 1,
                                      "correct": i < 14} for i in range(20)]  # fmt: skip
    outcomes += [SAMPLES["outcome"] | {"model_name": "shop", "event_id": f"c{i}", "model_version": 2,
                                       "correct": i < 9} for i in range(10)]  # fmt: skip
    write_records(client, {"outcomes": outcomes})
    client.close()
    code, out, _ = run(capsys, "ab", "--model", "shop", "--format", "json")
    canary, serving = sorted(json.loads(out), key=lambda row: row["reference_arm"])
    assert code == 0 and (serving["model_version"], serving["accuracy"], serving["reference_arm"]) == (1, 0.7, True)
    # 9 of 10 against 14 of 20 on other events: two proportions, standard error sqrt(.09/10 + .21/20).
    z = 0.2 / math.sqrt(0.9 * 0.1 / 10 + 0.7 * 0.3 / 20)
    assert (canary["model_version"], canary["arm"], canary["outcomes"], canary["compared"]) == (2, "served", 10, "arms")
    assert canary["difference"] == 0.2 and canary["p_value"] == round(math.erfc(z / math.sqrt(2)), 4)


def test_own_sql_binds_values_and_never_pastes_them(store, capsys):
    sql = "SELECT count() AS n FROM predictions FINAL WHERE model_name = {m:String}"
    assert json.loads(run(capsys, "--sql", sql, "--param", "m=fraud", "--format", "json")[1]) == [{"n": 20}]
    injected = run(capsys, "--sql", sql, "--param", "m=fraud' OR 1=1 --", "--format", "json")[1]
    assert json.loads(injected) == [{"n": 0}]


def test_bad_sql_is_a_clear_error(store, capsys):
    code, _, err = run(capsys, "--sql", "SELECT nope FROM predictions")
    assert code == 2 and "nope" in err


@pytest.mark.parametrize(
    ("sql", "statement"),
    [
        ("SELECT 1", "SELECT 1"),
        ("SELECT 1;", "SELECT 1"),
        ("SELECT 1; -- done\n /* and done */ ;", "SELECT 1"),
        ("SELECT ';' AS a, `b;c`, \"d;e\" -- ;\n", "SELECT ';' AS a, `b;c`, \"d;e\" -- ;\n"),
        ("SELECT 'it''s; \\' ;' /* ; /* ; */ ; */", "SELECT 'it''s; \\' ;' /* ; /* ; */ ; */"),
        ("SELECT $$;$$, $t$ ; $$ $t$", "SELECT $$;$$, $t$ ; $$ $t$"),
    ],
)
def test_one_statement_strips_a_trailing_semicolon_and_counts_none_inside_strings_or_comments(sql, statement):
    assert one_statement(sql) == statement


@pytest.mark.parametrize(
    "sql",
    ["SELECT 1; DROP TABLE predictions", "SELECT 1;DROP TABLE labels;", "SELECT 'a'; 'b'", "SELECT $t$;$t$; SELECT 2",
     "SELECT 1 -- c\n; DROP TABLE x", "SELECT a$b$; DROP TABLE x; $b$", ";", "", "  -- only a comment"],
)  # fmt: skip
def test_one_statement_refuses_several_or_none(sql):
    with pytest.raises(QueryError):
        one_statement(sql)


def row_counts(clickhouse):
    client = connect(clickhouse)
    try:
        return {t: client.query(f"SELECT count() FROM {t}").result_rows[0][0] for t in ("predictions", "labels")}
    finally:
        client.close()


def test_own_sql_is_one_read_only_statement(store, capsys):
    before = row_counts(store)
    assert before == {"predictions": 20, "labels": 10}
    code, _, err = run(capsys, "--sql", "SELECT 1; DROP TABLE predictions")
    assert code == 2 and "one statement per query" in err
    for sql in ["DROP TABLE labels", "INSERT INTO labels SELECT * FROM labels", "SELECT 1 SETTINGS readonly = 0"]:
        code, _, err = run(capsys, "--sql", sql)
        assert code == 2 and "READONLY" in err and len(err.splitlines()) == 1, sql
    code, out, _ = run(capsys, "--sql", "SELECT count() AS n FROM labels; -- trailing", "--format", "json")
    assert code == 0 and json.loads(out) == [{"n": 10}]
    assert row_counts(store) == before


def test_the_sink_endpoint_runs_one_read_only_statement(store, monkeypatch, capsys):
    before = row_counts(store)
    port = free_port()
    sink, server = Store(store), None
    try:
        server = QueryServer(sink, "127.0.0.1", port)
        server.start()
        url = SinkSettings(query_port=port).query_url
        with pytest.raises(QueryError, match="one statement per query"):
            ask(url, "SELECT 1; DROP TABLE predictions", {})
        for sql in ["DROP TABLE labels", "SELECT 1 SETTINGS readonly = 0"]:
            with pytest.raises(QueryError, match="READONLY"):
                ask(url, sql, {})
        labels = ask(url, QUERIES["labels"].sql, DEFAULTS | {"model": "fraud"})
        assert [row[:3] for row in labels.rows] == [["fraud", 2, 20]]

        monkeypatch.setenv("LOOPLINE_SINK_QUERY_PORT", str(port))  # the command sends its query to the endpoint
        code, _, err = run(capsys, "--sql", "DROP TABLE labels")
        assert code == 2 and "READONLY" in err
        code, out, _ = run(capsys, "--sql", "SELECT count() AS n FROM predictions;", "--format", "json")
        assert code == 0 and json.loads(out) == [{"n": 20}]
    finally:
        if server is not None:
            server.stop()
        sink.close()
    assert row_counts(store) == before
