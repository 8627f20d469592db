"""A bounded librdkafka call, with a stand-in producer: its answer or error comes back, its producer is polled
while it runs, and it is left once the producer lost a broker connection or the bound is over."""

import threading

import pytest

from loopline.kafka.bounded import Unanswered, bounded


class Producer:
    """Counts its polls (``thrice``: polled three times); from the ``lose_at``-th on, its error callback says
    it lost a broker connection."""

    def __init__(self, outage, lose_at=None):
        self.outage, self.lose_at, self.polls = outage, lose_at, 0
        self.thrice = threading.Event()

    def poll(self, timeout):
        self.polls += 1
        if self.polls >= 3:
            self.thrice.set()
        if self.lose_at is not None and self.polls >= self.lose_at:
            self.outage.set()


def test_a_call_that_returns_is_waited_for_and_its_producer_polled_meanwhile():
    outage = threading.Event()
    producer = Producer(outage)
    answered = []

    def call():  # answers once the producer was polled three times
        producer.thrice.wait()
        answered.append(True)

    bounded(call, producer, outage)
    assert answered == [True] and producer.polls >= 3


def test_the_calls_error_is_raised_in_the_callers_thread():
    def call():
        raise ValueError("fenced")

    outage = threading.Event()
    with pytest.raises(ValueError, match="fenced"):
        bounded(call, Producer(outage), outage)


def test_a_call_is_left_once_its_producer_lost_a_broker_connection():
    outage, hung = threading.Event(), threading.Event()
    try:
        with pytest.raises(Unanswered, match="lost a broker connection"):
            bounded(hung.wait, Producer(outage, lose_at=2), outage)
        assert not hung.is_set()
    finally:
        hung.set()


def test_a_call_is_left_at_its_bound():
    outage, hung = threading.Event(), threading.Event()
    try:
        with pytest.raises(Unanswered, match="did not answer"):
            bounded(hung.wait, Producer(outage), outage, limit_s=0.2)
        assert not outage.is_set() and not hung.is_set()
    finally:
        hung.set()
