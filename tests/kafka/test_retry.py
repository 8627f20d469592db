"""Calls made again while the broker does not answer, and the errors that end them."""

import threading

import pytest
from confluent_kafka import KafkaError, KafkaException

import loopline.kafka.retry as retry
from loopline.kafka.retry import Stopped, until_answered


@pytest.fixture(autouse=True)
def no_pause(monkeypatch):
    monkeypatch.setattr(retry, "RETRY_S", 0.0)


def failing(*errors):
    """A call that raises each of ``errors`` in turn, then returns how many calls it took."""
    left = list(errors)
    calls = []

    def call():
        calls.append(1)
        if left:
            raise KafkaException(left.pop(0))
        return len(calls)

    return call


def test_a_timed_out_call_is_made_again_even_where_the_client_does_not_mark_it_retriable():
    timed_out = KafkaError(KafkaError._TIMED_OUT, "Failed to get committed offsets: Local: Timed out")
    assert not timed_out.retriable()  # as the consumer's committed() raises it
    assert until_answered(failing(timed_out, timed_out), "reading offsets", None) == 3


def test_a_retriable_error_is_tried_again_until_stop():
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        until_answered(failing(KafkaError(KafkaError._TRANSPORT, retriable=True)), "committing", stop)


@pytest.mark.parametrize(
    "error",
    [
        KafkaError(KafkaError.INVALID_PRODUCER_EPOCH, fatal=True),
        KafkaError(KafkaError._TIMED_OUT, fatal=True),
        KafkaError(KafkaError._TIMED_OUT, txn_requires_abort=True),
        KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED),
    ],
    ids=["fatal", "a fatal timeout", "a timeout that needs the transaction aborted", "not retriable"],
)
def test_errors_no_retry_fixes_are_raised_at_once(error):
    with pytest.raises(KafkaException):
        until_answered(failing(error), "committing", None)
