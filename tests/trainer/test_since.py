"""Where ``loopline retrain --since`` starts a training, against the session broker."""

import time
from datetime import UTC, datetime

from loopline.kafka.clients import send_all
from loopline.kafka.topics import create_topics
from loopline.trainer.window import start_offsets


def test_since_an_offset_or_a_time_starts_each_outcomes_partition_there(kafka):
    create_topics(kafka)
    topic = kafka.topic("outcomes")
    send_all(kafka, topic, [("m", b"early")] * 3)
    time.sleep(0.05)
    moment = datetime.now(UTC)
    time.sleep(0.05)
    send_all(kafka, topic, [("m", b"late")] * 2)
    by_offset = start_offsets(kafka, 2)
    assert [(s["topic"], s["partition"], s["offset"]) for s in by_offset] == [(topic, 0, 2), (topic, 1, 2)]
    by_time = {s["partition"]: s["offset"] for s in start_offsets(kafka, moment)}
    # The model's partition starts at its first outcome written after the moment; the other (empty) at its end.
    assert sorted(by_time.values()) == [0, 3]
