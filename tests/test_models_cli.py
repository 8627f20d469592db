"""``loopline models ...`` against the session broker."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from loopline.cli import main
from loopline.codec import Codec
from loopline.kafka.clients import send_all
from loopline.kafka.topics import create_topics
from loopline.models import ArtifactStore, Status
from loopline.models.datasets import Concept, sample
from loopline.models.export import to_onnx
from loopline.models.registry import load_registry, publish
from tests.agents.test_inference_agent import send_features
from tests.helpers import N_FEATURES, nan_model, small_model, tampered, version_of
from tests.inference.test_loader import raw_scores
from tests.workers import decoded, wait_for, worker


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
    cli("bootstrap", "--model", "m", "--features", "4", "--rows", "1500", "--family", "trees", "--seed", "1")
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
    assert shown["status"] == "retired" and shown["lineage"]["hyperparameters"]["family"] == "trees"
    assert json.loads(cli("show", "1", "--model", "m")[1])["lineage"]["hyperparameters"]["hidden"] == "64,32"


def test_a_bootstrap_of_5000_features_is_published(cli, kafka):
    """An MLP of 5,000 inputs is an artifact of about 1.3 MB: more than librdkafka's default record size."""
    code, _, err = cli("bootstrap", "--model", "wide", "--features", "5000", "--rows", "100", "--serve")
    assert code == 0, err
    version = load_registry(kafka).serving("wide")
    assert version.version == 1 and len(version.feature_names) == 5000 and len(version.artifact) > 1_000_000


def test_a_promotion_by_hand_must_pass_the_models_regression_set(cli, kafka, tmp_path, monkeypatch):
    x, y = sample(Concept(seed=0, n_features=4), 40, seed=9)  # cases of version 1's world
    rows = [",".join(f"{v:.6f}" for v in values) + f",class{label}" for values, label in zip(x, y, strict=True)]
    (tmp_path / "m.csv").write_text("\n".join(["x0,x1,x2,x3,label", *rows]) + "\n")
    monkeypatch.setenv("LOOPLINE_REGISTRY_REGRESSION_DIR", str(tmp_path))
    assert cli("bootstrap", "--model", "m", "--features", "4", "--rows", "1500", "--serve")[0] == 0
    assert "regression set m.csv" in load_registry(kafka).serving("m").reason  # nothing served: nothing lost
    cli("bootstrap", "--model", "m", "--features", "4", "--rows", "1500", "--seed", "1")  # another world
    code, _, err = cli("promote", "2", "--model", "m")
    assert code == 2 and "regression: version 2 can't serve: regression set failed" in err and "loses" in err
    assert statuses(kafka) == {1: Status.SERVING, 2: Status.CANDIDATE}


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
    assert code == 2 and "feature-mismatch" in err and len(err.splitlines()) == 1
    code, _, err = cli("register", str(good), "--model", "new", "--features", "a,b", "--classes", "no,yes")
    assert code == 2 and "declares 2 features" in err
    assert statuses(kafka) == {1: Status.SERVING}
    assert ArtifactStore(tmp_path / "artifacts", 1 << 20).fetch(load_registry(kafka).serving("m")) == good.read_bytes()


def test_rollback_without_history_is_a_clear_error(cli):
    code, _, err = cli("rollback", "--model", "nothing")
    assert code == 2 and "no serving version" in err


NAMES = ",".join(f"x{i}" for i in range(N_FEATURES))


def register(cli, path, *extra):
    return cli("register", str(path), "--model", "m", "--features", NAMES, "--classes", "no,yes", *extra)


def test_a_version_with_other_features_never_serves_and_rollback_returns_to_one_that_passes(cli, kafka, tmp_path):
    """Item 6: an older client forced a version with other features to serving; the CLI undoes it and refuses more."""
    model = tmp_path / "v1.onnx"
    model.write_bytes(to_onnx(small_model()))
    assert register(cli, model, "--status", "serving")[0] == 0
    registry = load_registry(kafka)
    other = replace(version_of(small_model(1), 2, ArtifactStore(tmp_path / "artifacts", 1 << 20)),
                    feature_names=[f"y{i}" for i in range(N_FEATURES)])  # fmt: skip
    publish(kafka, [registry.get("m", 1).with_status(Status.RETIRED, "forced"), other])
    code, out, err = cli("rollback", "--model", "m")
    assert code == 0 and "m v1: serving" in out
    assert statuses(kafka) == {1: Status.SERVING, 2: Status.RETIRED}
    for args in (("promote", "2"), ("promote", "2", "--shadow")):
        code, _, err = cli(*args, "--model", "m")
        assert code == 2 and err.startswith("loopline: feature-mismatch: version 2") and len(err.splitlines()) == 1
    code, _, err = cli("register", str(model), "--model", "m", "--features", "a,b,c,d,e,f", "--classes", "no,yes",
                       "--status", "serving")  # fmt: skip
    assert code == 2 and "feature-mismatch" in err
    assert statuses(kafka) == {1: Status.SERVING, 2: Status.RETIRED}
    typed = ("--model", "m", "--features", "a,b,c,d,e,f", "--classes", "no,yes", "--status", "serving", "--types")
    code, _, err = cli("register", str(model), *typed, "float,text,float,float,float,float")
    assert code == 2 and err.startswith("loopline: feature-types: version 3: feature 'b' has type 'text'")
    code, _, err = cli("register", str(model), *typed, "float,float?,int,float,float,float")
    assert code == 2 and "non-finite-output" in err  # the model can't take the missing value it declares
    assert cli("register", str(model), *typed, "float,float,int,float,float,float")[0] == 0  # named: any fields
    assert load_registry(kafka).serving("m").feature_types == ["float", "float", "int", "float", "float", "float"]


def test_refused_registrations_leave_no_file_and_rollback_skips_a_broken_version(cli, kafka, tmp_path, monkeypatch):
    """Items 6, 8 and 9 through the CLI, with every artifact in files."""
    monkeypatch.setenv("LOOPLINE_REGISTRY_INLINE_LIMIT_BYTES", "0")
    artifacts = tmp_path / "artifacts"
    files = []
    for seed in range(3):
        files.append(tmp_path / f"m{seed}.onnx")
        files[-1].write_bytes(to_onnx(small_model(seed)))
    assert register(cli, files[0], "--status", "serving")[0] == 0
    for number in (2, 3):
        assert register(cli, files[number - 1])[0] == 0
        assert cli("promote", str(number), "--model", "m")[0] == 0
    published = sorted(p.name for p in artifacts.rglob("*") if p.is_file())
    assert len(published) == 3

    scores = tmp_path / "scores.onnx"
    scores.write_bytes(raw_scores(np.zeros((2, N_FEATURES)), [-3e30, -3e30]))
    nan = tmp_path / "nan.onnx"
    nan.write_bytes(to_onnx(nan_model()))
    for path, why in ((scores, "not-probabilities"), (nan, "non-finite-output"), (Path("/dev/zero"), "regular file")):
        code, _, err = register(cli, path)
        assert code == 2 and why in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in artifacts.rglob("*") if p.is_file()) == published  # nothing left behind
    code, out, _ = register(cli, scores, "--outputs", "logits")
    assert code == 0 and "m v4: candidate" in out

    registry = load_registry(kafka)
    ArtifactStore(artifacts, 0).path_of(registry.get("m", 2).artifact_uri).unlink()
    code, out, _ = cli("rollback", "--model", "m")
    assert code == 0 and out.splitlines()[0].startswith("skipped version 2: artifact:")
    assert statuses(kafka) == {1: Status.SERVING, 2: Status.RETIRED, 3: Status.RETIRED, 4: Status.CANDIDATE}
    code, _, err = cli("rollback", "--model", "m", "--to", "2")
    assert code == 2 and "artifact" in err


def listed(cli, model="m"):
    """``models list``: each version's status as shown."""
    code, out, _ = cli("list", "--model", model)
    assert code == 0
    return {int(line.split()[1]): line.split()[2] for line in out.splitlines()[1:]}


def test_list_shows_the_one_version_the_workers_serve_after_unchecked_serving_records(cli, kafka, tmp_path):
    """A plain producer says serving for version 2 (its artifact fails its checks), then for version 3; later
    for version 4 (failing too). ``models list`` shows one serving version, the one stamped on new
    predictions (by a worker that read the records live, and by one started after), and the others as
    refused or superseded."""
    model = tmp_path / "v1.onnx"
    model.write_bytes(to_onnx(small_model()))
    assert register(cli, model, "--status", "serving")[0] == 0
    store, codec = ArtifactStore(tmp_path / "artifacts", 1 << 20), Codec.load("model_version")

    def unchecked(*versions):
        send_all(kafka, kafka.topic("model-versions"), [(v.key, codec.encode(v.to_record())) for v in versions])

    def stamped(ids):
        by_id = {p["event_id"]: p["model_version"] for p in decoded(kafka, "predictions", "prediction")}
        return {by_id[i] for i in ids} if all(i in by_id for i in ids) else None

    def predicted(seed):
        ids = send_features(kafka, 20, seed=seed)
        return wait_for(lambda: stamped(ids), what="the predictions")

    settings = {"LOOPLINE_INFERENCE_MODEL_NAME": "m", "LOOPLINE_INFERENCE_MAX_WAIT_MS": "20"}
    with worker("inference", kafka, tmp_path, **settings) as w:
        serving = lambda: w.metric("loopline_serving_version", model="m", role="serving")  # noqa: E731
        wait_for(lambda: serving() == 1, what="version 1 loaded")
        unchecked(tampered(version_of(small_model(1), 2, store)), version_of(small_model(2), 3, store))
        wait_for(lambda: serving() == 3, what="version 3 loaded")
        assert predicted(seed=1) == {3}
        assert listed(cli) == {1: "superseded", 2: "refused", 3: "serving"}
        unchecked(version_of(nan_model(), 4, store))
        wait_for(lambda: w.metric("loopline_model_rejections_total", reason="non-finite-output") == 1,
                 what="version 4 refused")  # fmt: skip
        assert predicted(seed=2) == {3}
    assert listed(cli) == {1: "superseded", 2: "refused", 3: "serving", 4: "refused"}
    with worker("inference", kafka, tmp_path, **settings):  # reads every record at start
        assert predicted(seed=3) == {3}
    shown = json.loads(cli("show", "2", "--model", "m")[1])
    assert shown["status"] == "serving" and shown["on_the_workers"].startswith("refused (fails its checks: artifact")
    assert json.loads(cli("show", "3", "--model", "m")[1])["on_the_workers"] == "serving"
