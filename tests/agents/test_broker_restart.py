"""An inference worker through broker restarts: it never waits out a hung transactional call, and
serves every event once."""

import threading
import uuid

import pytest

from loopline.kafka.broker import Broker
from loopline.kafka.clients import make_sender
from loopline.kafka.topics import create_topics
from loopline.models import ArtifactStore
from loopline.models.registry import publish
from loopline.settings import BrokerSettings, KafkaSettings
from tests.agents.test_exactly_once import FAST, exactly_once
from tests.helpers import features_record, rows, small_model, version_of
from tests.workers import wait_for, worker

pytestmark = pytest.mark.slow  # a long integration test: `make test-quick` leaves it out


class Stream:
    """Feature events at about 400 a second from a thread, until stopped, acknowledged or not."""

    def __init__(self, kafka):
        self.kafka, self.sent, self.done = kafka, [], threading.Event()
        self.thread = threading.Thread(target=self._send)
        self.thread.start()

    def _send(self):
        producer, values = make_sender(self.kafka), rows(100)
        while not self.done.is_set():
            ids = [str(uuid.uuid4()) for _ in range(20)]
            for i, event in enumerate(ids):
                producer.produce(self.kafka.topic("features"), features_record(values[i], event), event)
            self.sent += ids
            producer.poll(0.05)
            if len(producer) > 5_000:  # the broker is away: wait for it rather than queue without bound
                producer.flush(1)
        producer.flush(60)  # the idempotent producer delivers each event once, outage or not

    def stop(self):
        self.done.set()
        self.thread.join()
        return self.sent


def test_an_inference_worker_through_broker_restarts_waits_out_no_hung_call_and_serves_every_event_once(tmp_path):
    broker = Broker(BrokerSettings(data_dir=tmp_path / "kafka", port=0))
    broker.start()
    try:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"t{uuid.uuid4().hex[:12]}.",
                              partitions=2)  # fmt: skip
        create_topics(kafka)
        publish(kafka, [version_of(small_model(), 1, ArtifactStore(tmp_path / "artifacts", 1 << 20))])
        stream = Stream(kafka)
        with worker("inference", kafka, tmp_path, **FAST) as w:
            served = 0.0
            for restart in range(3):  # a hung call followed two restarts in three before
                wait_for(lambda served=served: w.metric("loopline_events_in_total") > served + 200, timeout_s=120,
                         what=f"the worker serving before restart {restart}")  # fmt: skip
                served = w.metric("loopline_events_in_total")
                broker.stop()
                broker.start()
            sent = stream.stop()
            exactly_once(kafka, "predictions", "prediction", sent, timeout_s=180)
            assert w.proc.poll() is None  # the same worker throughout
        abandoned = [line for line in w.log.read_text().splitlines() if "did not answer in" in line]
        assert abandoned == []
    finally:
        broker.stop()
