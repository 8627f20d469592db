"""What the sink agent writes its rows to: a :class:`Sink` buffers them, and writes them at commit.

The sink agent decodes each batch of records into rows per table (:mod:`loopline.sink.core`), adds
them to its sink and flushes it before the batch's offsets are committed. A flush that raises
means that nothing is committed: the agent holds the batch and flushes again (with backoff) until
one succeeds, so every row is written at least once. The store must absorb a batch written twice
(a crash between a flush and its commit): :class:`~loopline.sink.clickhouse.ClickHouseSink`'s
ReplacingMergeTree tables, read with ``FINAL``, do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from loopline.sink.tables import Row, Table

__all__ = ["Sink"]


@runtime_checkable
class Sink(Protocol):
    """Where the sink agent's rows go: ``add`` buffers a batch's rows, ``flush`` writes them.

    Example:
        A sink that keeps every flushed row in a list::

            class ListSink:
                def __init__(self) -> None:
                    self.pending: list[tuple[str, list]] = []
                    self.written: list[tuple[str, list]] = []

                def add(self, table: Table, rows: Sequence[Row]) -> None:
                    self.pending += [(table.table, row) for row in rows]

                def flush(self) -> None:
                    self.written += self.pending
                    self.pending = []
    """

    def add(self, table: Table, rows: Sequence[Row]) -> None:
        """Buffer ``rows`` of ``table`` (each a list of values in ``table.columns`` order); called for
        every table a batch has rows for, before :meth:`flush`. Writes nothing yet."""
        ...

    def flush(self) -> None:
        """Write every row added since the last flush that succeeded; called once per batch, before its
        offsets are committed.

        Raises:
            Exception: any failure to write: the rows stay buffered, the batch is not committed, and
                the next flush writes them again.
        """
        ...
