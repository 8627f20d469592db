"""The entries the join holds in each input partition's state, and their expiry index (no Kafka).

The state of a partition, per key (see docs/architecture.md for sizing):

- ``e<event_id>``: the entry, in :func:`~loopline.join.entry.encode_entry`'s layout;
- ``t<deadline, 8 bytes big-endian><event_id>``: empty, the expiry index in deadline order.

Every change of an entry goes to the join's changelog. The index is written to the store only
(``logged=False``: it would double the changelog); :func:`reindex` rebuilds it, and the count of
entries, from the entries of a restored store. A batch reads and changes entries through
:class:`Touched`, which writes each one back once, at the batch's end.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from loopline.join.entry import Entry, decode_entry, encode_entry, entry_deadline
from loopline.state.state import State
from loopline.state.store import Store

__all__ = ["Touched", "by_deadline", "index_key", "reindex"]

_DEADLINE = struct.Struct(">Q")


class Touched:
    """The entries a batch read or changed, written back to the state once, at the batch's end."""

    def __init__(self, state: State, labels: str, counts: dict[int, int]) -> None:
        self.state, self.labels = state, labels
        self.entries: dict[tuple[int, str], Entry | None] = {}
        self.dirty: set[tuple[int, str]] = set()
        self.counts = dict(counts)
        """Entries per partition as this batch leaves them (the core's figures change once it is done)."""

    def get(self, partition: int, event_id: str) -> Entry | None:
        key = (partition, event_id)
        if key not in self.entries:
            data = self.state.get(partition, b"e" + event_id.encode())
            self.entries[key] = decode_entry(data, self.labels, partition) if data is not None else None
        return self.entries[key]

    def create(self, partition: int, event_id: str, deadline_ms: int) -> Entry:
        entry = Entry(deadline_ms)
        self.entries[(partition, event_id)] = entry
        self.dirty.add((partition, event_id))
        self.state.put(partition, index_key(deadline_ms, event_id), b"", logged=False)
        self.counts[partition] += 1
        return entry

    def changed(self, partition: int, event_id: str) -> None:
        self.dirty.add((partition, event_id))

    def delete(self, partition: int, event_id: str, entry: Entry) -> None:
        self.entries[(partition, event_id)] = None
        self.dirty.add((partition, event_id))
        self.state.delete(partition, index_key(entry.deadline_ms, event_id), logged=False)
        self.counts[partition] -= 1

    def save(self) -> None:
        for partition, event_id in self.dirty:
            entry, key = self.entries[(partition, event_id)], b"e" + event_id.encode()
            if entry is None:
                self.state.delete(partition, key)
            else:
                self.state.put(partition, key, encode_entry(entry))


def index_key(deadline_ms: int, event_id: str) -> bytes:
    """The key of ``event_id`` in the expiry index (a deadline below zero sorts as zero)."""
    return b"t" + _DEADLINE.pack(max(deadline_ms, 0)) + event_id.encode()


def by_deadline(state: State, partition: int) -> Iterator[tuple[int, int, str]]:
    """(deadline, partition, event_id) of the partition's entries, oldest deadline first."""
    for key, _ in state.range(partition, b"t", b"u"):
        yield _DEADLINE.unpack_from(key, 1)[0], partition, key[1 + _DEADLINE.size :].decode()


def reindex(store: Store) -> tuple[int, int | None]:
    """Replace the expiry index of a restored ``store`` by one of the entries it holds; the count of
    entries and the latest deadline among them (None: it holds none)."""
    index: dict[bytes, bytes | None] = {key: None for key, _ in store.range(b"t", b"u")}
    count = 0
    latest: int | None = None
    for key, value in store.range(b"e", b"f"):
        deadline = entry_deadline(value)
        index[index_key(deadline, key[1:].decode())] = b""
        latest = deadline if latest is None else max(latest, deadline)
        count += 1
    store.write(index)
    return count, latest
