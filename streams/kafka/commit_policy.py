"""When the open transaction is committed: full batches share one while a backlog drains.

A batch that comes full while another full one waits (the worker is behind) is sent into the
open transaction and not committed yet: the transaction takes the batches of up to
``interval_s``. It is committed with a batch after which less waits (the worker caught up), when
that time is up, and, by the loop, before the worker waits (its core is not ready, nothing came),
before its partitions are handed back, and at a stop. A transaction costs a few broker round
trips and the wait for the previous one's commit markers, whatever its size; a worker that has
caught up commits every batch at once, so the interval costs no latency.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import TopicPartition

from loopline.kafka.source import Partition
from loopline.records import Produced

__all__ = ["CommitPolicy", "Span"]


@dataclass
class Span:
    """The batches sent into the open transaction, not committed yet."""

    started: float
    offsets: dict[Partition, TopicPartition] = field(default_factory=dict)
    """Per input partition, where the transaction commits it (with the loop's metadata)."""
    batches: list[tuple[int, Produced, bool]] = field(default_factory=list)
    """Each batch's input records, output, and whether the core made it."""

    @property
    def inputs(self) -> int:
        return sum(count for count, _, _ in self.batches)


class CommitPolicy:
    """Holds the open transaction (:attr:`span`) and says when a batch commits it.

    Args:
        interval_s: longest time a transaction takes full batches before it is committed (0: every
            batch is committed on its own).
        clock: seconds, the transactions' ages are told by.
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s, self.clock = interval_s, clock
        self.span: Span | None = None

    @staticmethod
    def behind(taken: int, size: int, backlog: Callable[[], int]) -> bool:
        """Whether a batch of ``taken`` records, taken ``size`` at most, leaves the worker behind: it came full
        and at least another full one waits (``backlog``: the records not taken yet, asked only then)."""
        return taken == size and backlog() >= size

    def next(self) -> Span:
        """The open transaction, or the one a batch opens (it holds once :meth:`sent` is told)."""
        return self.span if self.span is not None else Span(self.clock())

    def closes(self, span: Span, behind: bool) -> bool:
        """Whether the batch sent into ``span`` commits it: the worker is not ``behind``, or ``span`` is as old
        as the interval."""
        return not behind or self.clock() - span.started >= self.interval_s

    def sent(self, span: Span, offsets: dict[Partition, TopicPartition], batch: tuple[int, Produced, bool]) -> None:
        """``batch`` (its input records, output, and whether the core made it) was sent into ``span``, which
        now commits at ``offsets``."""
        span.offsets = offsets
        span.batches.append(batch)
        self.span = span

    def end(self) -> Span | None:
        """The open transaction, which was committed or aborted: none is open now."""
        span, self.span = self.span, None
        return span
