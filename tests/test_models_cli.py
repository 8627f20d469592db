"""``loopline models ...`` against the session broker."""

import json

import pytest

from models import ArtifactStore, Status
from models.export import to_onnx
from streams.cli import main
from streams.kafka.topics import create_topics
from streams.kafka.versions import load_registry
from tests.helpers import N_FEATURES, nan_model, small_model


@pytest.fixture
def cli(kafka, tmp_path, monkeypatch, capsys):
    create_topics(kafka)
    monkeypatch.setenv("LOOPLINE_KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.setenv("LOOPLINE_KAFKA_TOPIC_PREFIX", kafka.topic_prefix)
    monkeypatch.setenv("LOOPLINE_REGISTRY_ARTIFACT_DIR", str(tmp_path / "artifacts"))

    def run(*args):
        code = main(["models", *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def statuses(kafka, model="m"):
    return {v.version: v.status for v in load_registry(kafka).versions(model)}


def test_bootstrap_promote_and_rollback(cli, kafka):
    code, out, _ = cli("bootstrap", "--model", "m", "--features", "4", "--rows", "1500", "--epochs", "2", "--serve")
    assert code == 0 and "holdout accuracy" in out
    assert statuses(kafka) == {1: Status.SERVING}
    cli("bootstrap", "--model", "m", "--features", "4", "--rows", "1500", "--epochs", "2", "--seed", "1")
    assert statuses(kafka) == {1: Status.SERVING, 2: Status.CANDIDATE}

    assert cli("promote", "2", "--model", "m")[0] == 0
    assert statuses(kafka) == {1: Status.RETIRED, 2: Status.SERVING}
    assert cli("rollback", "--model", "m", "--reason", "worse online")[0] == 0
    registry = load_registry(kafka)
    assert registry.serving("m").version == 1 and "worse online" in registry.serving("m").reason

    code, out, _ = cli("list")
    assert [line.split()[:3] for line in out.splitlines()[1:]] == [["m", "1", "serving"], ["m", "2", "retired"]]
    code, out, _ = cli("show", "2", "--model", "m")
    shown = json.loads(out)
    assert shown["status"] == "retired" and shown["lineage"]["hyperparameters"]["hidden"] == "64,32"


def test_register_checks_the_model_before_publishing(cli, kafka, tmp_path):
    good, bad = tmp_path / "good.onnx", tmp_path / "bad.onnx"
    good.write_bytes(to_onnx(small_model()))
    bad.write_bytes(to_onnx(nan_model()))
    names = ",".join(f"x{i}" for i in range(N_FEATURES))
    assert cli("register", str(good), "--model", "m", "--features", names, "--classes", "no,yes",
               "--status", "serving")[0] == 0  # fmt: skip
    code, _, err = cli("register", str(bad), "--model", "m", "--features", names, "--classes", "no,yes")
    assert code == 2 and "non-finite-output" in err
    code, _, err = cli("register", str(good), "--model", "m", "--features", "a,b", "--classes", "no,yes")
    assert code == 2 and "declares 2 features" in err
    assert statuses(kafka) == {1: Status.SERVING}
    assert ArtifactStore.fetch(load_registry(kafka).serving("m")) == good.read_bytes()


def test_rollback_without_history_is_a_clear_error(cli):
    code, _, err = cli("rollback", "--model", "nothing")
    assert code == 2 and "no serving version" in err
