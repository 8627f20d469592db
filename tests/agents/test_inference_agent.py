"""The inference worker as a real process against the session broker."""

import logging
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest

from loopline.agents.inference import VersionStager
from loopline.codec import Codec
from loopline.inference.core import InferenceCore
from loopline.inference.loader import load_model
from loopline.kafka.clients import read_to_end, send_all
from loopline.kafka.topics import create_topics
from loopline.models import ArtifactStore, Registry, Status
from loopline.models.registry import load_registry, publish
from loopline.models.registry.admission import rollback_records
from loopline.settings import InferenceSettings
from tests.helpers import (
    FEATURES,
    N_FEATURES,
    features_record,
    nan_model,
    poisoned,
    rows,
    small_model,
    tampered,
    version_of,
)
from tests.models.test_follower import following
from tests.workers import decoded, wait_for, wait_records, worker

MODEL = {"LOOPLINE_INFERENCE_MODEL_NAME": "m", "LOOPLINE_INFERENCE_MAX_WAIT_MS": "20"}
CHECKS = InferenceSettings(device="cpu")


@pytest.fixture
def setup(kafka, tmp_path):
    create_topics(kafka)
    store = ArtifactStore(tmp_path / "artifacts", inline_limit=1 << 20)
    return kafka, store, tmp_path


def send_features(kafka, count, seed=0, start_time=1_795_000_000_000, named=False):
    """``count`` feature events (with ``named``, their values also as named fields ``x0``...); their ids."""
    sent = [(str(uuid.uuid4()), values) for values in rows(count, seed)]
    records = []
    for i, (eid, values) in enumerate(sent):
        fields = {f"x{j}": float(v) for j, v in enumerate(values)} if named else {}
        records.append((eid, FEATURES.encode({"event_id": eid, "event_time": start_time + i, "entity_id": "e",
                                              "values": values.tolist(), "fields": fields})))  # fmt: skip
    send_all(kafka, kafka.topic("features"), records)
    return [eid for eid, _ in sent]


def served(kafka):
    return decoded(kafka, "predictions", "prediction")


def test_n_events_give_exactly_n_predictions(setup):
    kafka, store, tmp = setup
    publish(kafka, [version_of(small_model(), 1, store)])
    ids = send_features(kafka, 300)
    with worker("inference", kafka, tmp, **MODEL) as w:
        wait_records(kafka, "predictions", "prediction", 300)
        wait_for(lambda: w.metric("loopline_predictions_out_total") == 300, what="metrics")
        assert w.metric("loopline_serving_version", model="m", role="serving") == 1
    predictions = served(kafka)
    assert sorted(p["event_id"] for p in predictions) == sorted(ids)
    assert {(p["model_version"], p["shadow"]) for p in predictions} == {(1, False)}


def test_malformed_events_are_dead_lettered_and_the_rest_served(setup):
    kafka, store, tmp = setup
    publish(kafka, [version_of(small_model(), 1, store)])
    good = rows(4)
    batch = [("g0", features_record(good[0], "g0")), ("bad-bytes", b"\x00\x01garbage"),
             ("g1", features_record(good[1], "g1")), ("short", features_record([1.0, 2.0], "short")),
             ("g2", features_record(good[2], "g2")), ("nan", features_record([float("nan")] * 6, "nan")),
             ("g3", features_record(good[3], "g3"))]  # fmt: skip
    send_all(kafka, kafka.topic("features"), batch)
    with worker("inference", kafka, tmp, **MODEL):
        letters = wait_records(kafka, "dead-letters", "dead_letter", 3)
        predictions = wait_records(kafka, "predictions", "prediction", 4)
    assert sorted(p["event_id"] for p in predictions) == ["g0", "g1", "g2", "g3"]
    reasons = {d["key"].decode(): d["reason"] for d in letters}
    assert reasons == {"bad-bytes": "corrupt", "short": "wrong-length", "nan": "non-finite"}
    assert all(d["source_topic"] == kafka.topic("features") and d["agent"] == "inference" for d in letters)


def test_a_swap_under_load_to_another_input_predicts_every_event_once_and_changes_version_at_a_batch_boundary(setup):
    kafka, store, tmp = setup
    publish(kafka, [version_of(small_model(0), 1, store)])  # a dense vector
    sent: list[str] = []
    stop = threading.Event()

    def produce():
        chunk = 0
        while not stop.is_set():
            sent.extend(send_features(kafka, 40, seed=chunk, start_time=1_795_000_000_000 + chunk * 100, named=True))
            chunk += 1
            time.sleep(0.03)

    with worker("inference", kafka, tmp, **MODEL):
        producer = threading.Thread(target=produce)
        producer.start()
        try:
            wait_for(lambda: len(read_to_end(kafka, kafka.topic("predictions"))) > 400, what="v1 predictions")
            named = replace(version_of(small_model(1), 2, store), feature_types=["float"] * N_FEATURES)
            publish(kafka, [named])  # named fields: another input contract, no restart
            wait_for(lambda: any(p["model_version"] == 2 for p in served(kafka)), what="v2 predictions")
            time.sleep(1)
        finally:
            stop.set()
            producer.join()
        wait_records(kafka, "predictions", "prediction", len(sent))
        dense = send_features(kafka, 3, seed=7)  # without fields: they don't fit version 2
        letters = wait_records(kafka, "dead-letters", "dead_letter", 3)
    assert sorted(d["key"].decode() for d in letters) == sorted(dense) and {d["reason"] for d in letters} == {
        "missing-field"}  # fmt: skip
    predictions = served(kafka)
    assert sorted(p["event_id"] for p in predictions) == sorted(sent)  # each event exactly once
    assert not any(p["shadow"] for p in predictions)

    version_of_event = {p["event_id"]: p["model_version"] for p in predictions}
    for partition_versions in _versions_by_partition(kafka, version_of_event).values():
        assert partition_versions == sorted(partition_versions)  # 1 … 1, 2 … 2 in offset order
    assert {v for v in version_of_event.values()} == {1, 2}
    batches = defaultdict(set)
    for p in predictions:
        batches[(p["prediction_time"], p["inference_ms"])].add(p["model_version"])
    assert all(len(versions) == 1 for versions in batches.values())  # no batch mixes versions


def _versions_by_partition(kafka, version_of_event):
    by_partition = defaultdict(list)
    for message in read_to_end(kafka, kafka.topic("features")):
        event_id = FEATURES.decode(message.value())["event_id"]
        if event_id in version_of_event:  # not the events that became dead letters
            by_partition[message.partition()].append((message.offset(), version_of_event[event_id]))
    return {p: [v for _, v in sorted(items)] for p, items in by_partition.items()}


def test_a_corrupted_artifact_and_a_nan_model_are_rejected_and_the_old_version_keeps_serving(setup):
    kafka, store, tmp = setup
    publish(kafka, [version_of(small_model(), 1, store)])
    with worker("inference", kafka, tmp, **MODEL) as w:
        send_features(kafka, 20, seed=1)
        wait_records(kafka, "predictions", "prediction", 20)
        publish(kafka, [tampered(version_of(small_model(1), 2, store))])
        publish(kafka, [version_of(nan_model(), 3, store)])
        letters = wait_records(kafka, "dead-letters", "dead_letter", 2)
        send_features(kafka, 20, seed=2)
        predictions = wait_records(kafka, "predictions", "prediction", 40)
        assert w.metric("loopline_model_rejections_total", reason="artifact") == 1
        assert w.metric("loopline_model_rejections_total", reason="non-finite-output") == 1
    assert {p["model_version"] for p in predictions} == {1}
    assert [d["reason"] for d in letters] == ["model-rejected", "model-rejected"]
    assert "sha256 mismatch" in letters[0]["error"] and "version 2" in letters[0]["error"]
    assert "NaN" in letters[1]["error"] and "version 3" in letters[1]["error"]
    assert {d["source_topic"] for d in letters} == {kafka.topic("model-versions")}


def test_a_shadow_version_runs_on_the_same_events_but_is_never_served(setup):
    kafka, store, tmp = setup
    publish(kafka, [version_of(small_model(0), 1, store), version_of(small_model(1), 2, store, Status.SHADOW)])
    with worker("inference", kafka, tmp, **MODEL):
        wait_for(lambda: send_features(kafka, 1) and decoded(kafka, "shadow-predictions", "prediction"),
                 what="the shadow version to load")  # fmt: skip
        ids = send_features(kafka, 50, seed=3)
        shadow = wait_records(kafka, "shadow-predictions", "prediction", 50)
        predictions = wait_records(kafka, "predictions", "prediction", 50)
    assert {(p["model_version"], p["shadow"]) for p in predictions} == {(1, False)}
    assert {(p["model_version"], p["shadow"]) for p in shadow} == {(2, True)}
    assert set(ids) <= {p["event_id"] for p in shadow}


def send_entities(kafka, count, entities, seed):
    """``count`` feature events over ``entities`` entities; their event ids by entity."""
    by_entity = defaultdict(set)
    records = []
    for i, values in enumerate(rows(count, seed)):
        event_id, entity = str(uuid.uuid4()), f"user-{i % entities}"
        by_entity[entity].add(event_id)
        records.append((event_id, FEATURES.encode({"event_id": event_id, "event_time": 1_795_000_000_000 + i,
                                                   "entity_id": entity, "values": list(values)})))  # fmt: skip
    send_all(kafka, kafka.topic("features"), records)
    return by_entity


def test_rows_that_break_the_serving_backend_are_served_once_by_the_previous_version(setup):
    kafka, store, tmp = setup
    good, other = small_model(0), small_model(1)
    registry = Registry()
    for version in (version_of(good, 1, store), store.attach(version_of(other, 2, store, Status.CANDIDATE),
                                                             poisoned(other))):  # fmt: skip
        registry.apply(version)
    publish(kafka, [*registry.versions("m"), *registry.promote("m", 2, "a version with a poisoned kernel")])
    x = rows(400, seed=4)
    x[::40, 0] = 1000.0  # ten rows the serving graph fails on, spread over the batches
    ids = [f"p{i:03d}" for i in range(400)]
    with worker("inference", kafka, tmp, **MODEL) as w:
        send_all(kafka, kafka.topic("features"),
                 [(e, features_record(v, e, 1_795_000_000_000 + i)) for i, (e, v) in enumerate(zip(ids, x, strict=True))])  # fmt: skip
        predictions = wait_records(kafka, "predictions", "prediction", 400)
        wait_for(lambda: w.metric("loopline_runtime_fallback_rows_total", served_by="1/cpu") == 10, what="metrics")
        assert w.metric("loopline_serving_version", model="m", role="serving") == 2
    assert sorted(p["event_id"] for p in predictions) == ids  # every event once, none dead-lettered
    by_version = {p["event_id"]: p["model_version"] for p in predictions}
    assert {e for e, v in by_version.items() if v == 1} == {ids[i] for i in range(0, 400, 40)}
    assert decoded(kafka, "dead-letters", "dead_letter") == []


def test_two_workers_split_the_partitions_give_a_canary_the_same_entities_and_one_serves_all_after_the_other_stops(
    setup,
):
    kafka, store, tmp = setup
    registry = Registry()
    for version in (version_of(small_model(0), 1, store), version_of(small_model(1), 2, store, Status.CANDIDATE)):
        registry.apply(version)
    publish(kafka, [*registry.versions("m"), *registry.start_canary("m", 2, 0.2, "a 20% canary")])
    with worker("inference", kafka, tmp, **MODEL) as first, worker("inference", kafka, tmp, **MODEL) as second:
        warm = set(send_features(kafka, 10, seed=0))

        def both_busy():
            warm.update(send_features(kafka, 20, seed=len(warm)))
            return first.metric("loopline_events_in_total") > 0 and second.metric("loopline_events_in_total") > 0

        wait_for(both_busy, what="both workers to get partitions")
        sent = send_entities(kafka, 2000, 200, seed=1)
        wait_records(kafka, "predictions", "prediction", len(warm) + 2000)
        second.stop()
        before = first.metric("loopline_events_in_total")
        for record in registry.start_canary("m", 2, 0.5, "ramped"):
            registry.apply(record)
        publish(kafka, [registry.canary("m")])
        wait_for(lambda: first.metric("loopline_canary_traffic") == 0.5, what="the worker to take the new share")
        later = send_entities(kafka, 1000, 200, seed=2)
        predictions = wait_records(kafka, "predictions", "prediction", len(warm) + 3000)
        assert first.metric("loopline_events_in_total") >= before + 1000
    version_of_event = {p["event_id"]: p["model_version"] for p in predictions}
    assert len(predictions) == len(version_of_event) == len(warm) + 3000  # each event once
    arms = [{e: {version_of_event[i] for i in ids} for e, ids in wave.items()} for wave in (sent, later)]
    assert all(len(versions) == 1 for wave in arms for versions in wave.values())  # one version per entity
    small, large = ({e for e, v in wave.items() if v == {2}} for wave in arms)
    assert 20 <= len(small) <= 60 and 75 <= len(large) <= 125 and small <= large  # 40 and 100 expected, sd 6 and 7


def test_at_least_once_a_killed_worker_loses_no_event(setup):
    kafka, store, tmp = setup
    publish(kafka, [version_of(small_model(), 1, store)])
    ids = set(send_features(kafka, 20000))
    at_least_once = {"LOOPLINE_KAFKA_GUARANTEE": "at-least-once", **MODEL}
    with worker("inference", kafka, tmp, LOOPLINE_INFERENCE_MAX_BATCH_SIZE="16", **at_least_once) as first:
        wait_for(lambda: len(read_to_end(kafka, kafka.topic("predictions"))) >= 200, what="some predictions")
        first.proc.kill()  # no clean shutdown: whatever was not committed is read again
        first.proc.wait()
    assert len(read_to_end(kafka, kafka.topic("predictions"))) < len(ids)
    with worker("inference", kafka, tmp, **at_least_once):
        wait_for(lambda: {p["event_id"] for p in served(kafka)} >= ids, timeout_s=90, what="every event")
    assert {p["event_id"] for p in served(kafka)} == ids


def test_a_worker_starting_on_a_failing_serving_version_falls_back_and_agrees_with_the_registry_after_rollback(setup):
    """Items 6 and 7: an older client published v2 (other features), then v3 (wrong sha256) as serving, and
    another artifact under v1's key. The worker serves v1 with its first artifact, says why, and after the
    CLI's rollback the registry says what the worker does."""
    kafka, store, tmp = setup
    v1 = version_of(small_model(0), 1, store)
    v2 = replace(version_of(small_model(1), 2, store), feature_names=[f"y{i}" for i in range(6)])
    v3 = replace(version_of(small_model(2), 3, store), sha256="0" * 64)
    publish(kafka, [v1])
    publish(kafka, [v1.with_status(Status.RETIRED, "forced"), v2])
    publish(kafka, [v2.with_status(Status.RETIRED, "forced"), v3])
    codec = Codec.load("model_version")
    swapped = version_of(small_model(3), 1, store)
    send_all(kafka, kafka.topic("model-versions"), [(swapped.key, codec.encode(swapped.to_record()))])
    first = send_features(kafka, 100, seed=1)
    with worker("inference", kafka, tmp, **MODEL) as w:
        predictions = wait_records(kafka, "predictions", "prediction", 100)
        letters = wait_records(kafka, "dead-letters", "dead_letter", 3)
        assert w.metric("loopline_model_fallbacks_total", model="m") == 1
        assert w.metric("loopline_serving_version", model="m", role="serving") == 1
        records, skipped = rollback_records(load_registry(kafka), "m", "by hand", CHECKS, store)
        publish(kafka, records)
        later = send_features(kafka, 100, seed=2)
        predictions = wait_records(kafka, "predictions", "prediction", 200)
        assert w.metric("loopline_model_swaps_total", model="m", role="serving") == 1  # v1 stayed loaded
    assert sorted(p["event_id"] for p in predictions) == sorted(first + later)  # every event once
    assert {p["model_version"] for p in predictions} == {1}
    expected = load_model(v1, CHECKS, store, shadow=False, expected_features=None).backend.predict(rows(100, 1))
    by_id = {p["event_id"]: p["scores"] for p in predictions}
    np.testing.assert_allclose([by_id[e] for e in first], expected, rtol=1e-5)  # v1's first artifact served
    reasons = sorted((d["reason"], d["error"]) for d in letters)
    assert [reason for reason, _ in reasons] == ["model-rejected", "model-rejected", "version-conflict"]
    assert reasons[0][1].startswith("serving version 2: feature-mismatch")
    assert reasons[1][1].startswith("serving version 3: artifact: sha256 mismatch")
    assert reasons[2][1].startswith("version 1 of 'm' is already published; a record with another sha256")
    registry = load_registry(kafka)
    assert registry.serving("m").version == 1 and registry.get("m", 1).sha256 == v1.sha256
    assert len(skipped) == 1 and skipped[0].startswith("skipped version 2: feature-mismatch")


def test_a_worker_with_nothing_to_serve_says_so_and_counts_its_backlog_as_lag(setup):
    """Item 12: no serving version of the worker's model: a log line naming the versions, the gauge at 0,
    the unread features as consumer lag; once a version serves, every held event is predicted."""
    kafka, store, tmp = setup
    candidate = version_of(small_model(), 1, store, status=Status.CANDIDATE)
    publish(kafka, [candidate])
    ids = send_features(kafka, 50)
    with worker("inference", kafka, tmp, **MODEL) as w:
        group = f"{kafka.topic_prefix}inference"
        wait_for(lambda: w.metric("loopline_consumer_lag", group=group) == 50, what="the backlog as lag")
        assert "nothing to serve: model 'm' has no serving version (versions: 1 candidate)" in w.log.read_text()
        assert w.metric("loopline_serving_version", model="m", role="serving") == 0
        assert decoded(kafka, "predictions", "prediction") == []
        publish(kafka, [candidate.with_status(Status.SERVING, "go")])
        predictions = wait_records(kafka, "predictions", "prediction", 50)
        wait_for(lambda: w.metric("loopline_consumer_lag", group=group) == 0, what="the lag to drain")
    assert sorted(p["event_id"] for p in predictions) == sorted(ids)


class NoLag:
    def report(self):
        pass

    def close(self):
        pass


def test_the_follower_says_that_nothing_serves_only_once_it_has_read_the_topic_to_its_end(setup, caplog):
    """The first polls come before the first fetch: a warning then would name no version."""
    kafka, store, _ = setup
    publish(kafka, [version_of(small_model(), 1, store, status=Status.CANDIDATE)])
    settings = InferenceSettings(device="cpu", model_name="m")
    stager = VersionStager(InferenceCore(), settings, store, lambda letter: None, NoLag())
    with caplog.at_level(logging.WARNING, logger="loopline.inference"), following(kafka, stager):
        wait_for(lambda: any("nothing to serve" in r.getMessage() for r in caplog.records), what="the warning")
    said = [r.getMessage() for r in caplog.records if "nothing to serve" in r.getMessage()]
    assert len(said) == 1 and "model 'm' has no serving version (versions: 1 candidate)" in said[0]
