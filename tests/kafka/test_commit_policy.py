"""The commit policy alone: full batches share the open transaction while a full one waits behind them,
and the transaction is committed once the worker caught up or the interval is over."""

from loopline.kafka.commit_policy import CommitPolicy
from loopline.records import Produced, SourceRecord
from loopline.testing import MemorySource


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def records(count):
    return [SourceRecord(f"k{i}".encode(), f"v{i}".encode(), "in", 0, i, i) for i in range(count)]


def test_a_full_batch_leaves_the_worker_behind_while_a_full_one_waits():
    source = MemorySource(records(10))
    policy = CommitPolicy(60.0)
    assert policy.behind(len(source.take(4, 0)), 4, source.backlog)  # 6 wait
    assert not policy.behind(len(source.take(4, 0)), 4, source.backlog)  # 2 wait
    asked = []
    assert not policy.behind(2, 4, lambda: asked.append(1) or 10)  # a batch that did not come full
    assert asked == []  # the backlog is not asked then


def test_the_transaction_takes_batches_until_the_worker_caught_up_or_the_interval_is_over():
    clock = Clock()
    policy = CommitPolicy(60.0, clock)
    span = policy.next()
    assert policy.span is None  # not open before a batch is sent into it
    assert not policy.closes(span, behind=True)
    policy.sent(span, {}, (4, Produced(), True))
    clock.now += 30
    assert policy.next() is span and not policy.closes(span, behind=True)
    assert policy.closes(span, behind=False)  # caught up
    clock.now += 30
    assert policy.closes(span, behind=True)  # as old as the interval


def test_without_an_interval_every_batch_commits_its_transaction():
    policy = CommitPolicy(0.0)
    assert policy.closes(policy.next(), behind=True)


def test_the_open_transaction_counts_its_batches_and_ends_once():
    policy = CommitPolicy(60.0, Clock())
    span = policy.next()
    policy.sent(span, {}, (4, Produced(), True))
    policy.sent(policy.next(), {}, (3, Produced(), False))
    assert span.inputs == 7 and len(span.batches) == 2
    assert policy.end() is span
    assert policy.span is None and policy.end() is None
    assert policy.next() is not span  # a new one
