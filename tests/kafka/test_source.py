"""The source's lag gauge: what a worker reports of the partitions it reads."""

import time

from loopline.kafka.clients import make_sender, send_all
from loopline.kafka.source import KafkaSource
from loopline.kafka.topics import create_topics
from loopline.metrics import CONSUMER_LAG


def _lags(group: str, topic: str) -> dict[str, float]:
    return {
        s.labels["partition"]: s.value
        for family in CONSUMER_LAG.collect()
        for s in family.samples
        if s.labels["group"] == group and s.labels["topic"] == topic
    }


def _take_until(source: KafkaSource, done, timeout_s: float = 60.0) -> list:
    taken: list = []
    deadline = time.monotonic() + timeout_s
    while not done(taken) and time.monotonic() < deadline:
        taken += source.take(100, 0.05, first_wait_s=0.2)
    return taken


def test_an_idle_source_reports_its_empty_partitions_and_then_what_it_has_not_read(kafka):
    create_topics(kafka)
    topic, group = kafka.topic("features"), f"{kafka.topic_prefix}lag"
    source = KafkaSource(kafka, [topic], group)
    try:
        # nothing was ever written: every partition it owns reports a lag of 0 while it waits
        _take_until(source, lambda _: set(_lags(group, topic)) == {"0", "1"})
        assert _lags(group, topic) == {"0": 0.0, "1": 0.0}

        send_all(kafka, topic, [(b"k", b"v")] * 5, make_sender(kafka))
        taken = _take_until(source, lambda t: len(t) == 5)
        assert len(taken) == 5
        _take_until(source, lambda _: sum(_lags(group, topic).values()) == 0)
        assert _lags(group, topic) == {"0": 0.0, "1": 0.0}  # read to the end, reported while idle again
    finally:
        source.close()
