"""How batches are read again after a rewind (the loop undid what it sent since the last commit).

Two rewinds read smaller batches than ``max_batch`` for a while, each committed on its own:

- an output can't be sent and names no input: the batch is read again in halves, down to the
  one-record batch, whose one input is then dead-lettered in its place;
- a transaction that held several batches was aborted: its records are read again and committed
  batch by batch, so that a record that can't be sent is found in its own batch.

Either lasts until as many records as were read again are committed.
"""

from __future__ import annotations

__all__ = ["Rewinds"]


class Rewinds:
    """The reads again in halves and batch by batch that are under way, counted in committed records."""

    def __init__(self) -> None:
        self.narrow: int | None = None  # batch size while looking for an unsendable record's input
        self.narrow_left = 0  # records to commit before batches are taken whole again
        self.single_left = 0  # records of an aborted transaction still to commit batch by batch

    @property
    def alone(self) -> bool:
        """Whether each batch is committed on its own now."""
        return self.narrow is not None or self.single_left > 0

    def size(self, max_batch: int) -> int:
        """How many records the next batch takes at most."""
        return min(max_batch, self.narrow or max_batch)

    def halve(self, inputs: int, pending: int) -> int:
        """A batch of ``inputs`` records, sent after ``pending`` records of the open transaction, holds an
        unsendable record that names no input: it is read again in halves; the new batch size."""
        self.narrow = max(1, inputs // 2)
        self.narrow_left = inputs + pending
        return self.narrow

    def batch_by_batch(self, records: int) -> None:
        """A transaction of ``records`` records is read again, each batch committed on its own."""
        self.single_left = records

    def committed(self, records: int) -> None:
        """A batch of ``records`` records was committed."""
        if self.narrow is not None:
            self.narrow_left -= records
            if self.narrow_left <= 0:
                self.narrow = None
        self.single_left = max(0, self.single_left - records)
