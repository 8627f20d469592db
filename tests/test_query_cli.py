"""``loopline query`` on an embedded store, opened here or through a sink's query endpoint."""

import json
import math

import pytest

from loopline.analytics.queries import DEFAULTS, QUERIES, QueryError, one_statement
from loopline.analytics.server import QueryServer, ask, read_token
from loopline.cli import main
from loopline.kafka.broker import free_port
from loopline.settings import ClickHouseSettings, SinkSettings
from loopline.sink.clickhouse import ClickHouseSink
from loopline.store import connect
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
        assert code == 2 and ("READONLY" in err or "only statements that read" in err), sql
        assert len(err.splitlines()) == 1
    code, out, _ = run(capsys, "--sql", "SELECT count() AS n FROM labels; -- trailing", "--format", "json")
    assert code == 0 and json.loads(out) == [{"n": 10}]
    assert row_counts(store) == before


def test_statements_that_write_files_or_control_the_store_are_refused(store, capsys, tmp_path):
    kept, secret = tmp_path / "v.txt", tmp_path / "secret.txt"
    kept.write_text("kept\n")
    secret.write_text("s3cret\n")
    refused = {
        f"SELECT 'x' INTO OUTFILE '{kept}' TRUNCATE": "INTO OUTFILE writes a file",
        f"SELECT 'x' INTO OUTFILE '{kept}' APPEND": "INTO OUTFILE writes a file",
        f"SELECT 'x' INTO OUTFILE '{tmp_path / 'new.txt'}'": "INTO OUTFILE writes a file",
        "SYSTEM STOP MERGES": "only statements that read run here",
        "SYSTEM STOP TTL MERGES": "only statements that read run here",
        "KILL QUERY WHERE 1 SYNC": "only statements that read run here",
        f"SELECT file('{secret}') AS s": "file() reaches outside the database",
    }
    for sql, reason in refused.items():
        code, out, err = run(capsys, "--sql", sql)
        assert (code, out) == (2, "") and reason in err, sql
    assert kept.read_text() == "kept\n" and not (tmp_path / "new.txt").exists()


def test_every_query_runs_within_the_limits(store, capsys, monkeypatch):
    monkeypatch.setenv("LOOPLINE_SINK_QUERY_TIMEOUT_S", "1")
    code, _, err = run(capsys, "--sql", "SELECT count() FROM numbers(1e13)")
    assert code == 2 and "TIMEOUT_EXCEEDED" in err
    code, _, err = run(capsys, "--sql", "SELECT count() FROM numbers(1e13) SETTINGS max_execution_time = 0")
    assert code == 2 and "READONLY" in err
    monkeypatch.setenv("LOOPLINE_SINK_QUERY_MAX_MEMORY_BYTES", str(10_000_000))
    code, _, err = run(capsys, "--sql", "SELECT groupArray(number) FROM numbers(10000000)")
    assert code == 2 and "MEMORY_LIMIT_EXCEEDED" in err
    monkeypatch.setenv("LOOPLINE_SINK_QUERY_MAX_RESULT_ROWS", "5")
    code, _, err = run(capsys, "--sql", "SELECT number FROM numbers(10)")
    assert code == 2 and "TOO_MANY_ROWS_OR_BYTES" in err
    code, out, _ = run(capsys, "--sql", "SELECT number FROM numbers(5)", "--format", "csv")
    assert code == 0 and out.split() == ["number", "0", "1", "2", "3", "4"]


def test_the_sink_endpoint_runs_one_read_only_statement(store, monkeypatch, capsys, tmp_path):
    before = row_counts(store)
    settings = SinkSettings(query_port=free_port(), query_token_file=tmp_path / "token")
    sink, server = ClickHouseSink(store), None
    try:
        server = QueryServer(sink, settings)
        server.start()
        url, token = settings.query_url, read_token(settings)
        with pytest.raises(QueryError, match="one statement per query"):
            ask(url, "SELECT 1; DROP TABLE predictions", {}, token, 60)
        for sql, reason in {"DROP TABLE labels": "only statements that read",
                            "SELECT 1 SETTINGS readonly = 0": "READONLY"}.items():  # fmt: skip
            with pytest.raises(QueryError, match=reason):
                ask(url, sql, {}, token, 60)
        labels = ask(url, QUERIES["labels"].sql, DEFAULTS | {"model": "fraud"}, token, 60)
        assert [row[:3] for row in labels.rows] == [["fraud", 2, 20]]

        # The command sends its query to the endpoint, with the token from the sink's file.
        monkeypatch.setenv("LOOPLINE_SINK_QUERY_PORT", str(settings.query_port))
        monkeypatch.setenv("LOOPLINE_SINK_QUERY_TOKEN_FILE", str(settings.token_file))
        code, _, err = run(capsys, "--sql", "DROP TABLE labels")
        assert code == 2 and "only statements that read" in err
        code, out, _ = run(capsys, "--sql", "SELECT count() AS n FROM predictions;", "--format", "json")
        assert code == 0 and json.loads(out) == [{"n": 20}]
    finally:
        if server is not None:
            server.stop()
        sink.close()
    assert row_counts(store) == before
