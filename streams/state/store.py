"""The local key-value store of one input partition: keys in byte order, on disk (RocksDB) or in memory.

A store holds only committed state: the agent's changes of a batch are written to it once the
batch's transaction is committed (:class:`loopline.state.state.State`). A store on disk also keeps
a checkpoint, a changelog offset it holds every committed change before, replaced as the worker
runs and when the partition is handed back cleanly. A store holds what was written after its
checkpoint too, so a restore reads the changelog from the checkpoint and applies those changes
again, in order, which leaves them as they were. A store found without one is wiped and read
again from the changelog.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from rocksdict import Options, Rdict, WriteBatch
from sortedcontainers import SortedDict

__all__ = ["DiskStore", "MemoryStore", "Store"]

Changes = dict[bytes, bytes | None]
"""Key → new value, or None: the key is deleted."""


class Store(Protocol):
    """One partition's committed state."""

    def get(self, key: bytes) -> bytes | None: ...

    def write(self, changes: Changes) -> None:
        """Apply ``changes`` at once."""

    def range(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The items with ``start <= key < end``, in key order."""

    def checkpoint(self) -> int | None:
        """The changelog offset this store holds every committed change before (None: none, wipe it)."""

    def save(self, checkpoint: int) -> None:
        """Make what was written durable, then record ``checkpoint`` in place of the last one."""

    def close(self) -> None:
        """Let the store go, its checkpoint kept."""

    def wipe(self) -> None:
        """Delete everything, the checkpoint first."""

    def size(self) -> tuple[int, int]:
        """(keys, bytes) held, estimated on disk."""


class MemoryStore:
    """A store in memory: gone with its partition, so always read again from the changelog."""

    def __init__(self) -> None:
        self.items: SortedDict = SortedDict()
        self.bytes = 0

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.items.get(key)
        return value

    def write(self, changes: Changes) -> None:
        items = self.items
        for key, value in changes.items():
            old = items.pop(key, None)
            if old is not None:
                self.bytes -= len(key) + len(old)
            if value is not None:
                items[key] = value
                self.bytes += len(key) + len(value)

    def range(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key in self.items.irange(start, end, inclusive=(True, False)):
            yield key, self.items[key]

    def checkpoint(self) -> int | None:
        return None

    def save(self, checkpoint: int) -> None:
        """Nothing: a memory store does not outlive its process."""

    def close(self) -> None:
        self.wipe()

    def wipe(self) -> None:
        self.items.clear()
        self.bytes = 0

    def size(self) -> tuple[int, int]:
        return len(self.items), self.bytes


class DiskStore:
    """A RocksDB store in ``path`` (one directory per partition), with its checkpoint file beside the data."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.db = Rdict(str(path / "db"), Options(raw_mode=True))

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.db.get(key)
        return value

    def write(self, changes: Changes) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in changes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self.db.write(batch)

    def range(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        it = self.db.iter()
        it.seek(start)
        while it.valid():
            key = it.key()
            if key >= end:
                return
            yield key, it.value()
            it.next()

    def checkpoint(self) -> int | None:
        try:
            text = (self.path / "checkpoint").read_text()
        except FileNotFoundError:
            return None
        return int(text) if text.strip().isdigit() else None

    def save(self, checkpoint: int) -> None:
        """The write-ahead log synced (a process killed keeps what it wrote; this keeps it through a
        machine's crash too), then the checkpoint written beside it and renamed over the last one."""
        self.db.flush_wal(True)
        tmp = self.path / "checkpoint.tmp"
        with tmp.open("w") as file:
            file.write(str(checkpoint))
            file.flush()
            os.fsync(file.fileno())
        tmp.replace(self.path / "checkpoint")

    def close(self) -> None:
        self.db.close()

    def wipe(self) -> None:
        (self.path / "checkpoint").unlink(missing_ok=True)  # a crash while the store is empty must not find it
        self.db.close()
        shutil.rmtree(self.path / "db", ignore_errors=True)
        self.db = Rdict(str(self.path / "db"), Options(raw_mode=True))

    def size(self) -> tuple[int, int]:
        keys = self.db.property_int_value("rocksdb.estimate-num-keys") or 0
        live = self.db.property_int_value("rocksdb.estimate-live-data-size") or 0
        memtable = self.db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0
        return keys, live + memtable
