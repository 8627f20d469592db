"""A configuration or connection error ends a command or a worker with one line on stderr and exit code 2.

Most cases run ``main`` in this process (the same code path, and fast); a few run ``python -m
loopline.cli`` as a user does, so that nothing else (librdkafka, torch, a traceback) reaches stderr.
"""

import os
import pickle
import subprocess
import sys
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException

from loopline.cli import _one_line, main
from loopline.kafka.broker import Broker, free_port, local_kafka_settings
from loopline.kafka.topics import require_topics
from loopline.models.registry import load_registry
from loopline.settings import KafkaSettings


def one_line(code, err):
    """The error line, once the exit code is 2 and stderr holds that line alone."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("loopline: "), err
    return lines[0]


def processes(*runs):
    """Run ``(args, env)`` pairs of ``python -m loopline.cli`` at once; their (exit code, stderr) in order."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("LOOPLINE_")}
    started = [
        subprocess.Popen([sys.executable, "-m", "loopline.cli", *args], env=clean | env, text=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for args, env in runs
    ]  # fmt: skip
    errs = [p.communicate(timeout=120)[1] for p in started]
    return [(p.returncode, err) for p, err in zip(started, errs, strict=True)]


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No LOOPLINE_* variable from outside, and no local broker recorded."""
    for name in [name for name in os.environ if name.startswith("LOOPLINE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LOOPLINE_BROKER_DATA_DIR", str(tmp_path / "no-broker"))
    return monkeypatch


BAD_SETTINGS = [
    (["worker", "inference"], "LOOPLINE_INFERENCE_MAX_BATCH_SIZE", "0", "greater than or equal to 1"),
    (["worker", "inference"], "LOOPLINE_INFERENCE_MAX_BATCH_SIZE", "-1", "greater than or equal to 1"),
    (["worker", "inference"], "LOOPLINE_INFERENCE_MAX_BATCH_SIZE", "abc", "valid integer"),
    (["models", "list"], "LOOPLINE_INFERENCE_MAX_BATCH_SIZE", "abc", "valid integer"),  # read while parsing
    (["worker", "inference"], "LOOPLINE_INFERENCE_BACKEND", "tensorflow", "'auto', 'onnxruntime' or 'torch'"),
    (["worker", "drift"], "LOOPLINE_DRIFT_CONCEPT_PARAMS", "{delta: 0.1", "not valid JSON"),
    (["worker", "drift"], "LOOPLINE_DRIFT_CONCEPT_PARAMS", '{"nope": 1}', "bad parameters for ADWIN"),
    (["worker", "trainer"], "LOOPLINE_TRAINER_FAMILIES", "mlp,forest", "families must name some of mlp, trees"),
    (["worker", "sink"], "LOOPLINE_CLICKHOUSE_DSN", "mysql://db:3306/x", "unknown ClickHouse DSN scheme 'mysql'"),
    (["worker", "sink"], "LOOPLINE_SINK_QUERY_PORT", "70000", "less than or equal to 65535"),
    (["topics", "create"], "LOOPLINE_KAFKA_CONNECT_TIMEOUT_S", "0", "greater than 0"),
    (["db", "migrate"], "LOOPLINE_CLICKHOUSE_DATABASE", "x; DROP TABLE labels", "String should match pattern"),
]


def test_a_trainer_may_not_wait_longer_than_its_group_lets_it(isolated, capsys):
    isolated.setenv("LOOPLINE_TRAINER_WAIT_MINUTES", "5")  # the group's max poll interval is 5 minutes
    line = one_line(main(["worker", "trainer"]), capsys.readouterr().err)
    assert "LOOPLINE_TRAINER_WAIT_MINUTES (5) must be shorter than LOOPLINE_KAFKA_MAX_POLL_INTERVAL_MS" in line


def test_a_transaction_may_not_be_held_open_longer_than_the_broker_lets_it(isolated, capsys):
    isolated.setenv("LOOPLINE_KAFKA_COMMIT_INTERVAL_MS", "10000")  # the transaction timeout is 10 s
    line = one_line(main(["worker", "drift"]), capsys.readouterr().err)
    assert (
        "LOOPLINE_KAFKA_COMMIT_INTERVAL_MS (10000) must be shorter than LOOPLINE_KAFKA_TRANSACTION_TIMEOUT_MS" in line
    )


@pytest.mark.parametrize(("argv", "variable", "value", "why"), BAD_SETTINGS)
def test_a_bad_setting_is_one_line_naming_the_variable(isolated, capsys, argv, variable, value, why):
    isolated.setenv(variable, value)
    line = one_line(main(argv), capsys.readouterr().err)
    assert line.startswith(f"loopline: bad setting {variable}") and why in line


def test_an_unreadable_record_of_the_local_broker_is_one_line_naming_it(isolated, tmp_path, capsys):
    (tmp_path / "no-broker").mkdir()
    (tmp_path / "no-broker" / "broker.json").write_text("{")
    line = one_line(main(["topics", "create"]), capsys.readouterr().err)
    assert line.startswith(
        f"loopline: the local broker's state file {tmp_path / 'no-broker' / 'broker.json'} is unreadable"
    )


def test_an_embedded_store_that_cant_be_created_stops_the_sink_at_start(isolated, capsys):
    isolated.setenv("LOOPLINE_CLICKHOUSE_DSN", "chdb:///proc/loopline-store")
    assert "can't be created" in one_line(main(["worker", "sink"]), capsys.readouterr().err)


def test_an_unreachable_broker_is_one_line_after_a_bounded_wait(isolated, capsys):
    servers = f"127.0.0.1:{free_port()}"  # nothing listens there
    isolated.setenv("LOOPLINE_KAFKA_BOOTSTRAP_SERVERS", servers)
    isolated.setenv("LOOPLINE_KAFKA_CONNECT_TIMEOUT_S", "1")
    for argv in [["topics", "create"], ["models", "list"], ["retrain", "default"], ["worker", "inference"]]:
        line = one_line(main(argv), capsys.readouterr().err)
        assert line.startswith(f"loopline: cannot reach Kafka at {servers}: ") and "Connection refused" in line, argv


@pytest.mark.parametrize(
    ("code", "line"),
    [
        (
            KafkaError.UNKNOWN_TOPIC_OR_PART,
            "Kafka: Broker: Unknown topic or partition: run `loopline topics create` first",
        ),
        (KafkaError._ALL_BROKERS_DOWN, "cannot reach Kafka: Local: All broker connections are down"),
        (
            KafkaError.TOPIC_AUTHORIZATION_FAILED,
            "Kafka: TOPIC_AUTHORIZATION_FAILED: Broker: Topic authorization failed",
        ),
    ],
)
def test_a_kafka_error_after_the_checks_is_one_line_too(code, line):
    assert _one_line(KafkaException(KafkaError(code))) == line


def test_as_processes_a_bad_dsn_and_an_unreachable_broker_stop_workers_at_start_in_one_line(tmp_path):
    no_broker = {"LOOPLINE_BROKER_DATA_DIR": str(tmp_path)}
    servers = f"127.0.0.1:{free_port()}"
    done = processes(
        (["worker", "sink"], no_broker | {"LOOPLINE_CLICKHOUSE_DSN": "mysql://loopline:s3cret@db:3306/x"}),
        (["worker", "join"], no_broker | {"LOOPLINE_KAFKA_BOOTSTRAP_SERVERS": servers,
                                          "LOOPLINE_KAFKA_CONNECT_TIMEOUT_S": "1"}),
    )  # fmt: skip
    sink, join = (one_line(code, err) for code, err in done)
    assert sink.startswith("loopline: bad setting LOOPLINE_CLICKHOUSE_DSN: unknown ClickHouse DSN scheme 'mysql'")
    assert "s3cret" not in sink
    assert join.startswith(f"loopline: cannot reach Kafka at {servers}: ")


def test_on_a_broker_without_topics_commands_say_to_create_them_and_a_pickle_is_refused(kafka, isolated, tmp_path,
                                                                                       capsys):  # fmt: skip
    isolated.setenv("LOOPLINE_KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    isolated.setenv("LOOPLINE_KAFKA_TOPIC_PREFIX", kafka.topic_prefix)
    isolated.setenv("LOOPLINE_REGISTRY_ARTIFACT_DIR", str(tmp_path / "artifacts"))
    for argv in [["models", "list"], ["models", "bootstrap", "--rows", "500"], ["retrain", "default"],
                 ["worker", "inference"]]:  # fmt: skip
        line = one_line(main(argv), capsys.readouterr().err)
        assert "run `loopline topics create` first" in line and "UNKNOWN_TOPIC_OR_PART" not in line, argv

    assert main(["topics", "create"]) == 0
    require_topics(kafka)
    code = pickle.dumps({"__reduce__": print})  # a pickle, as a careless or hostile user would register it
    for name, extra in [("model.pt", ["--hidden", "4"]), ("model.pkl", [])]:
        (tmp_path / name).write_bytes(code)
        argv = ["models", "register", str(tmp_path / name), "--features", "a,b", "--classes", "0,1", *extra]
        line = one_line(main(argv), capsys.readouterr().err)
        assert "refused" in line or "can't load the artifact" in line or "can't load the state dict" in line, line
    assert load_registry(kafka).models() == []


def test_after_kafka_start_the_other_commands_reach_that_broker(broker: Broker, isolated, capsys):
    isolated.setenv("LOOPLINE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert main(["kafka", "start", "--data-dir", str(broker.data_dir)]) == 0  # it runs already: says where
    out, err = capsys.readouterr()
    assert f"export LOOPLINE_KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}" in out.splitlines()
    assert "LOOPLINE_KAFKA_BOOTSTRAP_SERVERS is set to 127.0.0.1:1" in err  # and that this shell goes elsewhere

    isolated.delenv("LOOPLINE_KAFKA_BOOTSTRAP_SERVERS")
    isolated.setenv("LOOPLINE_BROKER_DATA_DIR", str(broker.data_dir))
    prefix = f"t{uuid.uuid4().hex[:12]}."
    isolated.setenv("LOOPLINE_KAFKA_TOPIC_PREFIX", prefix)
    assert main(["topics", "create"]) == 0
    assert local_kafka_settings().bootstrap_servers == broker.bootstrap_servers
    require_topics(KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic_prefix=prefix))
