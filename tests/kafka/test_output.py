"""The Kafka output: a producer that breaks mid-transaction (on a real broker) is replaced and the batch
committed once; a transactional call is not waited for once its producer lost a broker connection."""

import threading
from collections import Counter

import pytest

from loopline.kafka.bounded import Unanswered, bounded
from loopline.kafka.broker import free_port
from loopline.kafka.clients import read_to_end, send_all
from loopline.kafka.loop import kafka_loop
from loopline.kafka.output import KafkaOutput
from loopline.kafka.topics import create_topics
from loopline.records import Produced, Topic
from loopline.settings import KafkaSettings
from tests.workers import wait_for


class Breaks:
    """A producer whose ``method`` raises ``SystemError`` at its first call (as a fenced one's ``flush`` did)
    instead of running; every other call goes to the real producer."""

    def __init__(self, producer, method):
        self.producer, self.method, self.raised = producer, method, 0

    def __getattr__(self, name):
        call = getattr(self.producer, name)
        if name != self.method or self.raised:
            return call

        def broken(*args, **kwargs):
            self.raised += 1
            raise SystemError("<built-in method> returned NULL without setting an exception")

        return broken


def relay(batch):
    out = Produced()
    out.extend(Topic.PREDICTIONS, [(r.key, r.value) for r in batch])
    return out


@pytest.mark.parametrize("method", ["flush", "commit_transaction"])
def test_a_producer_that_raises_anything_is_replaced_and_the_batch_committed_once(kafka, method):
    create_topics(kafka)
    sent = [(f"k{i}", f"v{i}".encode()) for i in range(300)]
    send_all(kafka, kafka.topic("features"), sent)
    loop = kafka_loop(kafka, "relay", [Topic.FEATURES], relay, max_batch=50, max_wait_s=0.05)
    broken = Breaks(loop.output.producer, method)
    loop.output.producer = broken
    stop, died = threading.Event(), []

    def run():
        try:
            loop.run(stop)
        except BaseException as exc:  # the loop thread's end, for the test's thread to see
            died.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_for(lambda: died or sum(1 for _ in read_to_end(kafka, kafka.topic("predictions"))) >= len(sent),
                 what="every record relayed")  # fmt: skip
    finally:
        stop.set()
        thread.join()
    assert died == []
    assert broken.raised == 1 and loop.output.producer is not broken  # replaced
    relayed = Counter((m.key().decode(), m.value()) for m in read_to_end(kafka, kafka.topic("predictions")))
    assert relayed == Counter(sent)  # each once


def test_a_call_is_not_waited_for_once_its_producer_lost_a_broker_connection():
    # No broker behind the port: the producer's first connection fails, which it reports through
    # its error callback, served while the call runs.
    nowhere = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", guarantee="at-least-once")
    output = KafkaOutput(nowhere, None, "lost")  # type: ignore[arg-type]  # no consumer: nothing is committed
    hung = threading.Event()  # a transactional call that never returns (librdkafka issues 5456, 5511)
    try:
        with pytest.raises(Unanswered, match="lost a broker connection"):
            bounded(hung.wait, output.producer, output.outage)
        assert not hung.is_set()  # left while it still ran
    finally:
        hung.set()
