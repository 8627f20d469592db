"""The README's Java example, compiled and run against the session broker and a real inference worker."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from loopline.kafka.topics import create_topics
from loopline.models import ArtifactStore, Status, TrainConfig, bootstrap_version
from loopline.models.datasets import Concept, feature_names, sample
from loopline.models.registry import publish
from loopline.settings import KafkaSettings
from tests.helpers import REPO_ROOT
from tests.workers import decoded, wait_records, worker

POM = REPO_ROOT / "ops" / "java-client" / "pom.xml"
MODEL = "default"
N_FEATURES = 8  # the example sends the features of `loopline models bootstrap`'s default model
PRINTED = re.compile(
    r"(?P<event_id>\S+): (?P<cls>\S+) \[(?P<scores>[^]]*)\] \(model (?P<model>\S+) v(?P<version>\d+)\)"
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("javac") is None or shutil.which("java") is None or shutil.which("mvn") is None,
        reason="the Java example needs a JDK (javac, java) and Maven (mvn) on PATH",
    ),
]


def java_example() -> str:
    """The first ```java block of README.md."""
    block = re.search(r"^```java\n(.*?)^```", (REPO_ROOT / "README.md").read_text(), re.S | re.M)
    assert block is not None, "README.md has no ```java block"
    return block.group(1)


def resolve_classpath(out: Path) -> str:
    """kafka-clients and Avro with their dependencies, resolved by Maven: offline once ~/.m2 holds them."""
    command = ["mvn", "-q", "-B", "-f", str(POM), "dependency:build-classpath", f"-Dmdep.outputFile={out}",
               "-Dmdep.includeScope=runtime"]  # fmt: skip
    if subprocess.run([*command, "-o"], capture_output=True).returncode != 0:
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, f"Maven could not resolve {POM}:\n{done.stdout}{done.stderr}"
    return out.read_text().strip()


def compile_example(work: Path) -> list[str]:
    """Compile the example into ``work``; the command line that runs it."""
    source = java_example()
    main = re.search(r"^public class (\w+)", source, re.M)
    assert main is not None, "the Java example declares no public class"
    path = work / f"{main.group(1)}.java"
    path.write_text(source)
    jars = resolve_classpath(work / "classpath.txt")
    classes = work / "classes"
    done = subprocess.run(["javac", "-cp", jars, "-d", str(classes), str(path)], capture_output=True, text=True)
    assert done.returncode == 0, f"javac:\n{done.stdout}{done.stderr}"
    return ["java", "-cp", f"{classes}{os.pathsep}{jars}", main.group(1), str(REPO_ROOT / "schemas")]


def serve_bootstrap_model(kafka: KafkaSettings, artifacts: Path) -> None:
    """Publish a small version of the model that `loopline models bootstrap --serve` makes, as serving."""
    x, y = sample(Concept(seed=0, n_features=N_FEATURES), rows=2000, seed=0)
    version = bootstrap_version(
        x, y, model_name=MODEL, feature_names=feature_names(N_FEATURES), classes=["class0", "class1"],
        store=ArtifactStore(artifacts, inline_limit=1 << 20), config=TrainConfig(hidden=(8,), epochs=2),
    )  # fmt: skip
    publish(kafka, [version.with_status(Status.SERVING, "bootstrapped")])


def test_the_java_example_sends_an_event_and_prints_the_prediction_served_for_it(kafka, tmp_path):
    command = compile_example(tmp_path)
    create_topics(kafka)
    serve_bootstrap_model(kafka, tmp_path / "artifacts")
    env = os.environ | {
        "LOOPLINE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "LOOPLINE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
    }
    with worker("inference", kafka, tmp_path, LOOPLINE_INFERENCE_MODEL_NAME=MODEL):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, f"the Java example failed:\n{done.stdout}{done.stderr}"
        [prediction] = wait_records(kafka, "predictions", "prediction", 1)
    [event] = decoded(kafka, "features", "features")  # the example's record, read by loopline's own codec
    assert len(event["values"]) == N_FEATURES and event["fields"] == {}
    assert prediction["event_id"] == event["event_id"]
    printed = PRINTED.fullmatch(done.stdout.strip())
    assert printed is not None, f"the Java example printed {done.stdout!r}"
    assert printed["event_id"] == event["event_id"]
    assert printed["cls"] == prediction["predicted_class"]
    assert [float(score) for score in printed["scores"].split(", ")] == pytest.approx(prediction["scores"])
    assert (printed["model"], int(printed["version"])) == (MODEL, prediction["model_version"]) == (MODEL, 1)
