"""The sink worker as a real process: every topic into chdb once, queries while it runs, an outage; and its
batch loop on the in-memory doubles: a batch is committed only once its flush succeeded."""

import subprocess
import sys
import threading

import pytest

from loopline.agents.sink import writer
from loopline.analytics.queries import DEFAULTS, QUERIES
from loopline.codec import Codec
from loopline.kafka.clients import send_all
from loopline.kafka.loop import BatchLoop
from loopline.kafka.retry import Stopped
from loopline.kafka.topics import create_topics
from loopline.query_cli import run_query
from loopline.records import SourceRecord
from loopline.settings import ClickHouseSettings, KafkaSettings, SinkSettings
from loopline.sink.core import SinkCore
from loopline.testing import MemoryOutput, MemorySink, MemorySource
from tests.samples import TOPIC_SCHEMA, analytics_records
from tests.workers import free_port, wait_for, worker

TABLE = {"predictions": "predictions", "labels": "labels", "outcomes": "outcomes", "drift-events": "drift_events",
         "retrain-requests": "retrain_requests", "model-versions": "model_versions", "dead-letters": "dead_letters"}  # fmt: skip


def produce(kafka, records, twice=False):
    for topic, rows in records.items():
        codec = Codec.load(TOPIC_SCHEMA[topic])
        encoded = [(row["event_id"], codec.encode(row)) for row in rows]
        send_all(kafka, kafka.topic(topic), encoded * (2 if twice else 1))


@pytest.fixture
def store(tmp_path):
    """An embedded store of the sink's own (a chdb directory is open in one process at a time)."""
    port = free_port()
    token = tmp_path / "sink-query.token"
    env = {"LOOPLINE_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'store'}", "LOOPLINE_SINK_QUERY_PORT": str(port),
           "LOOPLINE_SINK_QUERY_TOKEN_FILE": str(token), "LOOPLINE_SINK_MAX_WAIT_MS": "100"}  # fmt: skip
    return (
        env,
        ClickHouseSettings(dsn=env["LOOPLINE_CLICKHOUSE_DSN"]),
        SinkSettings(query_port=port, query_token_file=token),
    )


def count(clickhouse, sink, table):
    return run_query(f"SELECT count() FROM {table} FINAL", {}, clickhouse, sink).rows[0][0]


def canned(name, clickhouse, sink):
    result = run_query(QUERIES[name].sql, DEFAULTS | {"model": "fraud"}, clickhouse, sink)
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def test_every_topic_lands_once_and_the_queries_answer_while_the_sink_runs(kafka, tmp_path, store):
    env, clickhouse, sink = store
    create_topics(kafka)
    records = analytics_records()
    produce(kafka, records, twice=True)  # every record delivered twice
    send_all(kafka, kafka.topic("labels"), [("junk", b"\x00not avro")])
    total = 2 * sum(len(rows) for rows in records.values()) + 2  # and the junk's dead letter, read back
    with worker("sink", kafka, tmp_path, **env) as w:
        wait_for(lambda: w.metric("loopline_events_in_total") == total, what="every record written")
        for topic, rows in records.items():
            assert count(clickhouse, sink, TABLE[topic]) == len(rows) + (topic == "dead-letters"), topic
        accuracy = canned("accuracy", clickhouse, sink)
        latency = canned("latency", clickhouse, sink)
        labels = canned("labels", clickhouse, sink)
        letters = canned("dead-letters", clickhouse, sink)
        timeline = canned("timeline", clickhouse, sink)
    assert sum(row["outcomes"] for row in accuracy) == 10  # the serving version's; 5 shadow outcomes are apart
    assert sum(row["accuracy"] * row["outcomes"] for row in accuracy) == pytest.approx(7)
    assert latency == [{"model_name": "fraud", "model_version": 2, "predictions": 20, "p50_ms": 5.0, "p95_ms": 5.0,
                        "p99_ms": 5.0, "queue_wait_ms": 1.5, "batch_model_ms": 0.25}]  # fmt: skip
    assert [(r["predictions"], r["outcomes"], r["coverage"], r["p50_label_delay_s"]) for r in labels] == [
        (20, 10, 0.5, 60.0)
    ]
    assert [(r["agent"], r["reason"], r["letters"]) for r in letters] == [
        ("inference", "corrupt", 2), ("inference", "wrong-length", 1), ("sink", "corrupt", 1)]  # fmt: skip
    assert [r["event"] for r in timeline] == ["covariate drift", "retrain request", "version serving"]
    # With the sink stopped, the store opens in this process instead.
    assert count(clickhouse, sink, "outcomes") == 15


def test_a_store_held_elsewhere_holds_the_input_and_loses_nothing(kafka, tmp_path, store):
    env, clickhouse, sink = store
    create_topics(kafka)
    records = analytics_records()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, clickhouse_connect; c = clickhouse_connect.get_client(dsn=sys.argv[1]); "
         "print('held', flush=True); sys.stdin.read()", env["LOOPLINE_CLICKHOUSE_DSN"]],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with worker("sink", kafka, tmp_path, **env) as w:
        produce(kafka, records)
        wait_for(lambda: w.metric("loopline_sink_failures_total") >= 2, what="failed writes")
        assert w.metric("loopline_events_in_total") == 0  # the batch is held, not committed
        holder.stdin.close()  # the other process lets go of the store
        holder.wait(30)
        holder.stdout.close()
        total = sum(len(rows) for rows in records.values())
        wait_for(lambda: w.metric("loopline_events_in_total") == total, timeout_s=90, what="the held input written")
        for topic, rows in records.items():
            assert count(clickhouse, sink, TABLE[topic]) == len(rows), topic


def sink_records():
    """The analytics records, as the sink reads them (topics without a prefix)."""
    return [
        SourceRecord(row["event_id"].encode(), Codec.load(TOPIC_SCHEMA[topic]).encode(row), topic, 0, offset, 0)
        for topic, rows in analytics_records().items()
        for offset, row in enumerate(rows)
    ]


def sink_loop(sink, stop):
    """The sink agent's batch loop on the in-memory source and output, writing to ``sink``."""
    records = sink_records()
    source = MemorySource(records)
    output = MemoryOutput(source)
    process = writer(SinkCore(KafkaSettings(topic_prefix="")), sink, 0.05, stop)
    return BatchLoop("sink", source, output, process, max_batch=len(records), max_wait_s=0, max_crashes=0), output


def test_a_batch_is_committed_once_its_flush_succeeds_and_written_once():
    sink = MemorySink(failures=2)
    loop, output = sink_loop(sink, threading.Event())
    records = loop.take()
    assert loop.step(records, threading.Event())  # two failed flushes, then one that writes
    assert sink.flushes == 3 and output.transactions == 1
    assert {table: len(rows) for table, rows in sink.rows.items()} == {
        TABLE[topic]: len(rows) for topic, rows in analytics_records().items()
    }
    assert {tp: offset for tp, (offset, _) in loop.source.committed.items()} == {
        (topic, 0): len(rows) for topic, rows in analytics_records().items()
    }


def test_a_worker_stopped_while_its_flush_fails_commits_nothing():
    stop = threading.Event()
    sink = MemorySink(failures=1)
    loop, output = sink_loop(sink, stop)
    records = loop.take()
    stop.set()
    with pytest.raises(Stopped):
        loop.step(records, stop)
    assert sink.flushes == 1 and sink.rows == {}
    assert output.transactions == 0 and loop.source.committed == {}
