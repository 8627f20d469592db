"""The join worker as a real process against the session broker."""

import random

import pytest

from loopline.codec import Codec
from loopline.kafka.clients import make_sender, read_to_end, send_all
from loopline.kafka.topics import create_topics
from loopline.models import ArtifactStore
from loopline.models.registry import publish
from loopline.records import Topic
from tests.helpers import features_record, rows, small_model, version_of
from tests.workers import decoded, wait_for, wait_records, worker

T0 = 1_795_000_000_000
PREDICTION, LABEL = Codec.load("prediction"), Codec.load("label")


@pytest.fixture
def setup(kafka, tmp_path):
    create_topics(kafka)
    publish(kafka, [version_of(small_model(), 1, ArtifactStore(tmp_path / "artifacts", 1 << 20))])
    return kafka, tmp_path


def parts(event_ids, seed=0):
    """(topic, key, value) of the features, prediction and label of each event."""
    features = [
        ("features", e, features_record(v, e, T0 + i))
        for i, (e, v) in enumerate(zip(event_ids, rows(len(event_ids), seed), strict=False))
    ]
    predictions = [("predictions", e, PREDICTION.encode({
        "event_id": e, "event_time": T0 + i, "prediction_time": T0 + i + 2, "entity_id": "e", "model_name": "m",
        "model_version": 1, "shadow": False, "scores": [0.3, 0.7], "predicted_class": "yes",
        "queue_wait_ms": 1.0, "inference_ms": 0.1})) for i, e in enumerate(event_ids)]  # fmt: skip
    labels = [("labels", e, LABEL.encode({"event_id": e, "event_time": T0 + i + 60_000, "label": "yes" if i % 3 else "no"}))
              for i, e in enumerate(event_ids)]  # fmt: skip
    return features, predictions, labels


def send(kafka, records):
    for topic in ("features", "predictions", "labels"):
        mine = [(key, value) for t, key, value in records if t == topic]
        if mine:
            send_all(kafka, kafka.topic(topic), mine)


def outcomes(kafka):
    return decoded(kafka, "outcomes", "outcome")


def test_two_workers_join_every_order_once_and_dead_letter_garbage(setup):
    kafka, tmp = setup
    ids = [f"e{i}" for i in range(400)]
    features, predictions, labels = parts(ids)
    labelled = set(ids[:300])
    shuffled = features + predictions + [lab for lab in labels if lab[1] in labelled]
    shuffled += random.Random(1).sample(shuffled, 100)  # duplicates
    random.Random(2).shuffle(shuffled)
    with worker("join", kafka, tmp) as first, worker("join", kafka, tmp) as second:
        wait_for(lambda: first.owns() and second.owns() and set(first.owns()).isdisjoint(second.owns()),
                 what="the two workers to share the partitions")  # fmt: skip
        send(kafka, shuffled)
        send_all(kafka, kafka.topic("labels"), [("junk", b"\x00not avro")])
        found = wait_records(kafka, "outcomes", "outcome", 300)
        letters = wait_records(kafka, "dead-letters", "dead_letter", 1)
        wait_for(lambda: first.metric("loopline_events_in_total") and second.metric("loopline_events_in_total"),
                 what="both workers to take part")  # fmt: skip
    assert sorted(o["event_id"] for o in found) == sorted(labelled)
    by_id = {o["event_id"]: o for o in found}
    assert by_id["e1"]["correct"] and not by_id["e0"]["correct"]
    assert by_id["e1"]["label_delay_ms"] == 60_000 and by_id["e1"]["prediction_delay_ms"] == 2
    assert {m.key() for m in read_to_end(kafka, kafka.topic("outcomes"))} == {b"m"}
    assert [(d["agent"], d["reason"]) for d in letters] == [("join", "corrupt")]


def test_a_restarted_worker_restores_its_state_and_sends_no_outcome_twice(setup):
    kafka, tmp = setup
    ids = [f"e{i}" for i in range(200)]
    features, predictions, labels = parts(ids)
    early, late = labels[:120], labels[120:]
    with worker("join", kafka, tmp, LOOPLINE_KAFKA_WORKER_ID="j1") as first:
        send(kafka, features + predictions + early)
        wait_records(kafka, "outcomes", "outcome", 120)
        # The worker commits a batch before it counts it: all 520 records are committed.
        wait_for(lambda: first.metric("loopline_events_in_total") == 520, what="the commit of everything read")
        wait_for(lambda: first.metric("loopline_join_pending") == 80, what="80 events to wait for their labels")
        assert first.metric("loopline_state_bytes", agent="join") > 80 * 100
    # 80 predictions wait for labels that arrive while no join worker runs.
    send(kafka, late)
    with worker("join", kafka, tmp, LOOPLINE_KAFKA_WORKER_ID="j1") as second:
        wait_records(kafka, "outcomes", "outcome", 200)
        # Its store on disk was closed cleanly: restored from the checkpoint, with nothing to read
        # back, and the input is read on from the commit (the 80 late labels only).
        wait_for(lambda: second.metric("loopline_events_in_total") == 80, what="the late labels")
        assert second.metric("loopline_state_restored_records_total") == 0
    assert sorted(o["event_id"] for o in outcomes(kafka)) == sorted(ids)


def test_a_worker_without_its_store_restores_the_state_from_the_changelog(setup):
    kafka, tmp = setup
    ids = [f"e{i}" for i in range(100)]
    features, predictions, labels = parts(ids)
    with worker("join", kafka, tmp) as first:
        send(kafka, features + predictions)
        wait_for(lambda: first.metric("loopline_events_in_total") == 200, what="the commit of everything read")
    # every logged change of the 100 entries, one or more per entry as the batches fell (the expiry
    # index is rebuilt from them, not logged)
    logged = read_to_end(kafka, kafka.topic(Topic.JOIN_CHANGELOG))
    assert len({m.key() for m in logged}) == 100
    with worker("join", kafka, tmp, LOOPLINE_STATE_BACKEND="memory") as second:
        send(kafka, labels)
        wait_records(kafka, "outcomes", "outcome", 100)
        wait_for(lambda: second.metric("loopline_events_in_total") == 100, what="the labels")
        assert second.metric("loopline_state_restored_records_total") == len(logged)
    assert sorted(o["event_id"] for o in outcomes(kafka)) == sorted(ids)


def test_labels_stamped_below_zero_at_1_ms_and_in_1971_join_the_events_that_come_after_them(setup):
    kafka, tmp = setup
    ids = ["e0", "e1", "e2"]
    features, predictions, labels = parts(ids)
    with worker("join", kafka, tmp) as join:
        send(kafka, parts(["before"])[0])  # the join has read a record: its record time is T0
        wait_for(lambda: join.metric("loopline_events_in_total") == 1, what="the first record")
        sender = make_sender(kafka)
        for (_, key, value), stamp in zip(labels, [-5, 1, 31_536_000_000], strict=True):
            sender.produce(kafka.topic("labels"), value, key, timestamp=stamp)
        assert sender.flush(30) == 0
        stamps = sorted(m.timestamp()[1] for m in read_to_end(kafka, kafka.topic("labels")))
        assert stamps == [-5, 1, 31_536_000_000]  # as the broker stores them
        wait_for(lambda: join.metric("loopline_events_in_total") == 4, what="the labels, before their events")
        send(kafka, features + predictions)
        found = wait_records(kafka, "outcomes", "outcome", 3)
    assert sorted(o["event_id"] for o in found) == ids
    assert decoded(kafka, "dead-letters", "dead_letter") == []
