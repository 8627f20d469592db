"""Drift monitors and the rollback guard keep their state across a SIGKILL (real broker, real workers),
restored from the checkpoints the killed worker took as it ran.

The outcomes are produced here directly (keyed by model name, as the join sends them), so that a
run is the same records at the same offsets with or without the kill, and figures come from offsets.
"""

import random
import signal
from dataclasses import replace

import pytest
from confluent_kafka import Consumer, TopicPartition

from loopline.codec import Codec
from loopline.drift.core import DriftCore
from loopline.kafka.clients import send_all
from loopline.kafka.config import confluent_config
from loopline.kafka.topics import create_topics
from loopline.models import ArtifactStore, Registry, Status
from loopline.models.registry import load_registry, publish
from loopline.records import SourceRecord, Topic
from loopline.settings import DriftSettings
from loopline.state.changelog import KafkaChangelog
from loopline.state.store import DiskStore
from tests.helpers import N_FEATURES, small_model, trained_model, version_of
from tests.workers import Worker, decoded, wait_for

pytestmark = pytest.mark.slow  # a long integration test: `make test-quick` leaves it out

T0 = 1_795_000_000_000
OUTCOME, DRIFT = Codec.load("outcome"), Codec.load("drift_event")


def outcomes(count, error_rate, seed, version=1, start=0):
    """(key, value) of ``count`` outcomes of model m with about ``error_rate`` of them wrong."""
    rng = random.Random(seed)
    records = []
    for i in range(start, start + count):
        correct = rng.random() >= error_rate
        records.append((b"m", OUTCOME.encode({
            "event_id": f"e{i}", "event_time": T0 + i, "entity_id": "u", "values": [rng.gauss(0, 1) for _ in range(N_FEATURES)],
            "model_name": "m", "model_version": version, "shadow": False, "scores": [0.3, 0.7],
            "predicted_class": "yes", "label": "yes" if correct else "no", "label_time": T0 + i + 10,
            "prediction_delay_ms": 5, "label_delay_ms": 10, "correct": correct, "log_loss": 0.36 if correct else 1.2,
            "label_rate": 1.0,
        })))  # fmt: skip
    return records


def committed(kafka, group):
    """Outcome records the group has committed, over every partition."""
    consumer = Consumer(confluent_config(kafka, {"group.id": group, "enable.auto.commit": False}))
    try:
        parts = [TopicPartition(kafka.topic("outcomes"), p) for p in range(kafka.partitions)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


def kill(w: Worker) -> None:
    w.proc.send_signal(signal.SIGKILL)
    w.proc.wait()


def changelog_read(kafka, stores):
    """(changelog records a restore of ``stores`` reads from their checkpoints, and from the start)."""
    changelog = KafkaChangelog(kafka, kafka.topic(Topic.DRIFT_CHANGELOG))
    tail = full = 0
    try:
        for partition in range(kafka.partitions):
            store = DiskStore(stores / str(partition))
            checkpoint = store.checkpoint()
            store.close()
            assert checkpoint is not None
            tail += changelog.read(partition, checkpoint, lambda changes: None)
            full += changelog.read(partition, None, lambda changes: None)
    finally:
        changelog.close()
    return tail, full


def detection(kafka):
    """The outcome offset at which the first concept drift was detected."""
    events = [e for e in decoded(kafka, "drift-events", "drift_event") if e["evidence"]["kind"] == "concept"]
    return int(events[0]["event_id"].rsplit("/", 1)[1]) if events else None


def test_a_drift_that_straddles_a_kill_is_detected_at_the_same_outcome(kafka, tmp_path):
    create_topics(kafka)
    version = version_of(small_model(), 1, ArtifactStore(tmp_path / "artifacts", 1 << 20))
    publish(kafka, [version])
    stream = outcomes(600, 0.1, seed=1) + outcomes(1400, 0.5, seed=2, start=600)  # the error rises at offset 600
    env = {
        "LOOPLINE_DRIFT_MIN_SAMPLES": "300",
        "LOOPLINE_DRIFT_MAX_BATCH_SIZE": "64",
        "LOOPLINE_KAFKA_WORKER_ID": "d1",
        "LOOPLINE_DRIFT_FOLLOW_UP_SAMPLES": "0",
        "LOOPLINE_STATE_CHECKPOINT_INTERVAL_MS": "0",  # a checkpoint at every commit
    }  # one drift, one request
    # The uninterrupted run, by the same core in this process: the outcomes' offsets are their
    # positions (one partition: they are keyed by model name).
    core = DriftCore(DriftSettings(min_samples=300), kafka.topic("outcomes"), lambda model, number: version)
    records = [SourceRecord(k, v, kafka.topic("outcomes"), 0, i, T0 + i) for i, (k, v) in enumerate(stream)]
    events = [DRIFT.decode(value) for start in range(0, len(records), 64)
              for _, value in core.process(records[start : start + 64]).drift_events]  # fmt: skip
    expected = int(next(e for e in events if e["evidence"]["kind"] == "concept")["event_id"].rsplit("/", 1)[1])
    assert 600 < expected < 2000
    cut = (600 + expected) // 2  # the worker dies after the drift began, before it was detected
    drift = Worker("drift", kafka, tmp_path, env)
    try:
        send_all(kafka, kafka.topic("outcomes"), stream[:cut])
        wait_for(lambda: committed(kafka, f"{kafka.topic_prefix}drift") == cut, what="the records before the kill")
        kill(drift)
        tail, full = changelog_read(kafka, tmp_path / "state" / f"{kafka.topic_prefix}drift" / "d1")
        send_all(kafka, kafka.topic("outcomes"), stream[cut:])
        drift = Worker("drift", kafka, tmp_path, env)  # the same worker id: its stores and their checkpoints
        wait_for(lambda: detection(kafka), what="the concept drift after the restart")
        # The restart read the changelog from the last checkpoints only.
        assert drift.metric("loopline_state_restored_records_total", agent="drift") == tail < full
    finally:
        drift.stop()
    # The monitors were restored exactly: the same detection as without the kill, at the same
    # outcome (a block of 32 at most apart), and one retrain request.
    assert abs(detection(kafka) - expected) <= 32
    assert len(decoded(kafka, "retrain-requests", "retrain_request")) == 1


def test_a_guard_restarted_between_a_promotion_and_its_verdict_still_rolls_the_bad_version_back(kafka, tmp_path):
    create_topics(kafka)
    store = ArtifactStore(tmp_path / "artifacts", 1 << 20)
    good = version_of(trained_model(concept_seed=1), 1, store)
    bad = version_of(trained_model(concept_seed=2), 2, store, status=Status.CANDIDATE)
    bad = replace(bad, lineage=bad.lineage | {"parent_version": 1})
    publish(kafka, [good])
    env = {"LOOPLINE_TRAINER_GUARD_OUTCOMES": "200", "LOOPLINE_REGISTRY_ARTIFACT_DIR": str(tmp_path / "artifacts"),
           "LOOPLINE_KAFKA_WORKER_ID": "t1"}  # fmt: skip
    group = f"{kafka.topic_prefix}trainer-guard"
    trainer = Worker("trainer", kafka, tmp_path, env)
    try:
        send_all(kafka, kafka.topic("outcomes"), outcomes(300, 0.1, seed=3))  # version 1 serves well
        registry = Registry()
        registry.apply(good)
        registry.apply(bad)
        publish(kafka, [bad, *registry.promote("m", 2, "planted regression")])
        send_all(kafka, kafka.topic("outcomes"), outcomes(120, 0.5, seed=4, version=2, start=300))
        wait_for(lambda: committed(kafka, group) == 420, what="the guard to read the first outcomes of version 2")
        kill(trainer)  # version 2 has 120 of the 200 outcomes it is judged on
        trainer = Worker("trainer", kafka, tmp_path, env)
        send_all(kafka, kafka.topic("outcomes"), outcomes(120, 0.5, seed=5, version=2, start=420))
        wait_for(lambda: load_registry(kafka).serving("m").version == 1, what="the rollback to version 1")
    finally:
        trainer.stop()
    back = load_registry(kafka).get("m", 1)
    assert "rollback from version 2: automatic: online accuracy" in back.reason
