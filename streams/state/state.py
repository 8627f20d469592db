"""An agent's state: one store per input partition it owns, every change logged to a changelog topic.

This is how Kafka Streams and quixstreams keep state, on loopline's batch loop:

- A core reads and writes its state through :class:`State` (``get``, ``put``, ``delete``,
  ``range``), per input partition number. Writes of the running batch stay in an overlay.
- The batch loop takes the overlay (:meth:`State.changes`) and sends it to the changelog topic,
  partition for partition, in the transaction of the batch's outputs and input offsets. Once the
  transaction is committed the overlay goes into the stores (:meth:`State.committed`); when it is
  aborted the overlay is dropped (:meth:`State.discard`): a store only ever holds committed state.
- When a worker is given a partition, its store is restored from the changelog, from the store's
  checkpoint where it has one (on disk), else from the start of the compacted changelog; then the
  input is read from the committed offsets. There is nothing to re-read: the changelog and the
  offsets were committed together.
- Checkpoints: a store's checkpoint is a changelog offset below which it holds every committed
  change. One is recorded after each restore, every ``checkpoint_interval_s`` as the worker
  commits and when a partition is handed back cleanly, so a worker killed and started again on
  the same directory reads only what was committed since its last one. A running checkpoint is
  the changelog's last stable offset read before a transaction is committed, recorded once it is
  committed and the store took its changes: everything committed below that offset was committed
  by this worker (whose transactions are in the store) or read by the restore. A transaction whose
  end is not known (its changes dropped, though the broker may have committed it) keeps a
  partition handed back on its last checkpoint, so that the next restore reads it again.

A crashed worker's transaction may still be open when its successor restores: committed records
of the changelog can lie behind it, so the restore reads until the end of the log (the broker
aborts the open transaction after ``transaction.timeout.ms``, at once when the worker restarts
with the same ``LOOPLINE_KAFKA_WORKER_ID``).
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from loopline.records import Produced, SourceRecord
from loopline.state.store import Changes, Store

__all__ = ["Changelog", "Mirror", "OutOfRange", "Restorable", "State"]

log = logging.getLogger(__name__)


class OutOfRange(Exception):
    """A checkpoint names an offset the changelog does not have (the topic was made again)."""


class Changelog(Protocol):
    """Where a state's changes are read back from (``loopline.state.changelog.KafkaChangelog``)."""

    topic: str
    """The changelog topic's full name, where the batch loop sends the changes."""

    def end(self, partition: int) -> int | None:
        """The last stable offset of ``partition``: no transaction is open before it (None: it can't be
        read now)."""

    def read(self, partition: int, start: int | None, apply: Callable[[Changes], None]) -> int:
        """Apply the committed changes of ``partition`` from offset ``start`` (None: its first), in
        chunks; returns how many records were read.

        Raises:
            OutOfRange: the log has no offset ``start``.
        """


class State:
    """The state of one agent's core, per input partition number.

    Args:
        agent: the agent's name, for logs and metrics.
        open_store: the store of a partition (opened on assignment).
        changelog: where restores read from.
        on_restored: told of each restore: (partition, changelog records read, seconds).
        checkpoint_interval_s: seconds between two checkpoints as the worker commits (0: at every commit;
            ``LOOPLINE_STATE_CHECKPOINT_INTERVAL_MS`` in a worker).
    """

    def __init__(
        self,
        agent: str,
        open_store: Callable[[int], Store],
        changelog: Changelog,
        on_restored: Callable[[int, int, float], None] | None = None,
        checkpoint_interval_s: float = 10.0,
    ) -> None:
        self.agent, self.open_store, self.changelog, self.on_restored = agent, open_store, changelog, on_restored
        self.checkpoint_interval_s = checkpoint_interval_s
        self.stores: dict[int, Store] = {}
        self.overlay: dict[int, Changes] = {}
        self.pending: dict[int, Changes] = {}
        """The changes handed to the loop by :meth:`changes` (of one or more batches of the open
        transaction), read like the store's and written to it once committed."""
        self.unlogged: dict[int, set[bytes]] = {}
        """Keys written to the stores only: derived data a core rebuilds itself after a restore."""
        self.saved_at = time.monotonic()
        """When the last running checkpoints were recorded."""
        self.next_checkpoints: dict[int, int] | None = None
        """Partition → the changelog's last stable offset, read before the open transaction was committed:
        the checkpoints recorded once it is."""
        self.unsaved: set[int] = set()
        """Partitions whose stores took changes since their last checkpoint."""
        self.doubtful: set[int] = set()
        """Partitions whose changes of a transaction were dropped since they were restored: the broker may
        have committed it, so the end of their changelog is no checkpoint for them."""

    # --- the core's side -------------------------------------------------------------------

    def get(self, partition: int, key: bytes) -> bytes | None:
        for written in (self.overlay.get(partition), self.pending.get(partition)):
            if written is not None and key in written:
                return written[key]
        return self.stores[partition].get(key)

    def put(self, partition: int, key: bytes, value: bytes, logged: bool = True) -> None:
        """Write ``key``; ``logged=False``: to the store only, never to the changelog (an index the
        core rebuilds from the logged keys when a partition is restored)."""
        self.overlay.setdefault(partition, {})[key] = value
        if not logged:
            self.unlogged.setdefault(partition, set()).add(key)

    def delete(self, partition: int, key: bytes, logged: bool = True) -> None:
        overlay = self.overlay.setdefault(partition, {})
        if key not in self.pending.get(partition, {}) and self.stores[partition].get(key) is None:
            overlay.pop(key, None)  # not in the committed state: nothing to delete, nothing to log
        else:
            overlay[key] = None
            if not logged:
                self.unlogged.setdefault(partition, set()).add(key)

    def range(self, partition: int, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The items with ``start <= key < end`` in key order, the running batch's writes included.

        Read it lazily and stop early (the join's expiry reads the oldest deadlines only); writing
        while iterating is allowed, the iteration goes on over what it had when it began.
        """
        overlay = {**self.pending.get(partition, {}), **self.overlay.get(partition, {})}
        written = sorted((k, v) for k, v in overlay.items() if start <= k < end)
        stored = ((k, v) for k, v in self.stores[partition].range(start, end) if k not in overlay)
        for key, value in heapq.merge(stored, written, key=lambda item: item[0]):
            if value is not None:
                yield key, value

    def items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """Everything the partition holds, in key order."""
        return self.range(partition, b"", b"\xff" * 64)

    @property
    def partitions(self) -> list[int]:
        return list(self.stores)

    # --- the batch loop's side -------------------------------------------------------------

    def changes(self) -> dict[int, Changes]:
        """The running batch's changes per partition, to be logged with the batch (the unlogged keys
        left out); kept, with those of the transaction's earlier batches, until :meth:`committed`
        or :meth:`discard`.

        When a checkpoint is due, the last stable offsets of the changelog partitions with changes are
        read first: nothing this worker has not committed yet lies below them.
        """
        if self.next_checkpoints is None and time.monotonic() - self.saved_at >= self.checkpoint_interval_s:
            written = self.unsaved | {p for p, changes in (*self.overlay.items(), *self.pending.items()) if changes}
            self.next_checkpoints = self._ends(written & set(self.stores))
        logged = {}
        for partition, changes in self.overlay.items():
            if not changes:
                continue
            self.pending.setdefault(partition, {}).update(changes)
            local = self.unlogged.get(partition)
            logged[partition] = {k: v for k, v in changes.items() if k not in local} if local else changes
        self.overlay = {}
        return {partition: changes for partition, changes in logged.items() if changes}

    def committed(self) -> None:
        """The changes handed out were committed with their transaction: into the stores with them, then
        the checkpoints read before the commit, if one was due."""
        for partition, changes in self.pending.items():
            if partition in self.stores and changes:
                self.stores[partition].write(changes)
                self.unsaved.add(partition)
        self.pending, self.unlogged = {}, {}
        if self.next_checkpoints is not None:
            for partition, offset in self.next_checkpoints.items():
                if partition in self.stores:
                    self.stores[partition].save(offset)
                    self.unsaved.discard(partition)
            self.next_checkpoints, self.saved_at = None, time.monotonic()

    def discard(self, batch_only: bool = False) -> None:
        """The changes of the transaction are not committed: forget them (``batch_only``: the running
        batch's only, those of its earlier batches stay)."""
        self.overlay = {}
        if not batch_only:
            self.doubtful.update(partition for partition, changes in self.pending.items() if changes)
            self.pending, self.unlogged, self.next_checkpoints = {}, {}, None

    def assign(self, partitions: Iterable[int]) -> None:
        """Open and restore the stores of ``partitions`` (those held already stay as they are), each from
        its checkpoint, and record the last stable offset read before the restore as the next one:
        the restore read past it."""
        for partition in sorted(set(partitions) - set(self.stores)):
            store = self.open_store(partition)
            began = time.monotonic()
            end = self.changelog.end(partition)
            start = store.checkpoint()
            if start is not None and end is not None and end < start:
                log.warning("%s: partition %d's checkpoint %d is past the end of its changelog, %d (the topic was "
                            "made again); restoring it from the start", self.agent, partition, start, end)  # fmt: skip
                start = None
            if start is None:
                store.wipe()
            try:
                count = self.changelog.read(partition, start, store.write)
            except OutOfRange as exc:
                log.warning("%s: %s; restoring partition %d from the start", self.agent, exc, partition)
                store.wipe()
                start = None
                count = self.changelog.read(partition, None, store.write)
            if end is not None:
                store.save(end)
                self.unsaved.discard(partition)
            else:  # the next checkpoint records it
                self.unsaved.add(partition)
            self.stores[partition] = store
            self.doubtful.discard(partition)
            seconds = time.monotonic() - began
            log.info("%s: partition %d restored (%d changelog records from %s) in %.2fs", self.agent, partition,
                     count, "its checkpoint" if start is not None else "the start", seconds)  # fmt: skip
            if self.on_restored is not None:
                self.on_restored(partition, count, seconds)

    def revoke(self, partitions: Iterable[int], clean: bool) -> None:
        """Close the stores of ``partitions``; uncommitted changes are dropped.

        ``clean``: this worker hands them back (a rebalance, a stop), so nobody else wrote to their
        changelogs since its last commit, and the end of each changelog is the store's checkpoint,
        unless a transaction's end is not known. A partition lost (another worker may own it
        already) keeps its last checkpoint, as do those of a worker that is killed.
        """
        self.discard()
        held = set(partitions) & set(self.stores)
        ends = self._ends(held - self.doubtful) if clean else {}
        for partition in sorted(held):
            store = self.stores.pop(partition)
            if partition in ends:
                store.save(ends[partition])
            store.close()
            self.doubtful.discard(partition)
            self.unsaved.discard(partition)

    def _ends(self, partitions: Iterable[int]) -> dict[int, int]:
        """The last stable offsets of the changelog's ``partitions``, up to the first that can't be read."""
        ends = {}
        for partition in sorted(partitions):
            end = self.changelog.end(partition)
            if end is None:
                break
            ends[partition] = end
        return ends

    def sizes(self) -> dict[int, tuple[int, int]]:
        """Partition → (keys, bytes) of its store."""
        return {partition: store.size() for partition, store in self.stores.items()}


class Restorable(Protocol):
    """A core that keeps its state in memory, hands out what each batch changed, and is rebuilt from it."""

    def changes(self) -> dict[int, Changes]: ...

    def restore(self, partition: int, items: Iterable[tuple[bytes, bytes]]) -> None: ...

    def revoke(self, partitions: Iterable[int]) -> None: ...


class Mirror:
    """Wires a :class:`Restorable` core to a :class:`State`: its changes go into the batch's state
    changes, and a partition given to the worker is rebuilt from the restored store.

    ``process``, ``assigned`` and ``revoked`` are the batch loop's core and rebalance callbacks.
    """

    def __init__(self, state: State, core: Restorable, process: Callable[[list[SourceRecord]], Produced]) -> None:
        self.state, self.core, self._process = state, core, process

    def process(self, records: list[SourceRecord]) -> Produced:
        out = self._process(records)
        for partition, changes in self.core.changes().items():
            for key, value in changes.items():
                if value is None:
                    self.state.delete(partition, key)
                else:
                    self.state.put(partition, key, value)
        return out

    def assigned(self, committed: dict[tuple[str, int], tuple[int, str]]) -> None:
        """Called after the state restored the partitions' stores."""
        for partition in sorted({partition for _, partition in committed}):
            self.core.restore(partition, self.state.items(partition))

    def revoked(self, partitions: list[tuple[str, int]], lost: bool) -> None:
        self.core.revoke({partition for _, partition in partitions})
