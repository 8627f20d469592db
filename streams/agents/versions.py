"""The registry snapshot an agent's core looks versions up in, caught up before a batch that needs it.

A core takes ``lookup(model, version)`` and does no I/O. :class:`SnapshotLookup` is that callable
over the worker's :class:`~loopline.models.registry.RegistryFollower`: before each batch, the agent
(:meth:`SnapshotLookup.before`) reads which versions the batch's records name and, when the snapshot
does not hold one of them, waits until the follower has read model-versions up to the ends it has
then (a worker serves a version only after it was published, so its first prediction finds it).
The core then looks versions up in that snapshot; a version still unknown is one the core handles
as unknown (a dead letter, a skipped outcome).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from loopline.codec import Codec, CodecError
from loopline.codec.framing import HEADER_SIZE
from loopline.codec.varint import read_long
from loopline.models.registry import ModelVersion, RegistryFollower, Snapshot
from loopline.records import Produced, SourceRecord

__all__ = ["SnapshotLookup", "VersionPeek"]

log = logging.getLogger(__name__)

P = TypeVar("P", bound=Produced)

_BEFORE_NAME = {"prediction": ("string", "long", "long", "string"), "outcome": ("string", "long", "string", "floats")}
"""The fields before ``model_name`` in the current schema of each record that names a model version."""


class VersionPeek:
    """The (model, version) a prediction or outcome record names, read from the front of its bytes.

    A record in the current writer schema is read up to its ``model_version`` only (an outcome's
    values are skipped, not decoded); one in another writer schema is decoded by its codec. A
    record that is neither (garbage, another topic) names none: the core says why.

    Args:
        schemas: topic → the schema of its records (``prediction`` or ``outcome``).
    """

    def __init__(self, schemas: Mapping[str, str]) -> None:
        self.codecs = {topic: Codec.load(name) for topic, name in schemas.items()}
        self.fields = {topic: _BEFORE_NAME[name] for topic, name in schemas.items()}

    def __call__(self, record: SourceRecord) -> tuple[str, int] | None:
        codec = self.codecs.get(record.topic)
        if codec is None:
            return None
        data = record.value
        if data[:HEADER_SIZE] == codec.header:
            try:
                return _named(data, self.fields[record.topic])
            except (IndexError, ValueError):
                return None
        try:
            decoded = codec.decode(data)
        except CodecError:
            return None
        return decoded["model_name"], decoded["model_version"]


def _named(data: bytes, before: Sequence[str]) -> tuple[str, int] | None:
    pos = HEADER_SIZE
    for kind in before:
        if kind == "long":
            _, pos = read_long(data, pos)
        elif kind == "string":
            size, pos = read_long(data, pos)
            pos += size
        else:  # an array of floats, in blocks: a negative count is followed by the block's size in bytes
            count, pos = read_long(data, pos)
            while count:
                if count < 0:
                    count = -count
                    _, pos = read_long(data, pos)
                pos += 4 * count
                count, pos = read_long(data, pos)
    size, pos = read_long(data, pos)
    if size < 0 or pos + size > len(data):
        return None
    name = data[pos : pos + size].decode()
    version, _ = read_long(data, pos + size)
    return name, version


class SnapshotLookup:
    """A core's ``lookup(model, version)``: the version in the snapshot taken for the current batch.

    Args:
        follower: the worker's registry follower.
        named: the (model, version) a record names, None for none (a :class:`VersionPeek`).
        wait_s: how long a batch waits for the follower to catch up.
        refresh_s: a version that was still unknown after a catch-up makes the next catch-up only
            this much later, so that records naming a version that does not exist do not wait per batch.
        clock: monotonic seconds (replaceable in tests).
    """

    def __init__(
        self,
        follower: RegistryFollower,
        named: Callable[[SourceRecord], tuple[str, int] | None],
        wait_s: float = 10.0,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.follower, self.named, self.wait_s, self.refresh_s, self.clock = follower, named, wait_s, refresh_s, clock
        self.snapshot: Snapshot = follower.snapshot
        self.missed: dict[tuple[str, int], float] = {}

    def __call__(self, model_name: str, version: int) -> ModelVersion:
        """The version as the batch's snapshot holds it (no I/O).

        Raises:
            KeyError: the snapshot holds no such version.
        """
        return self.snapshot.lookup(model_name, version)

    def pin(self, records: Sequence[SourceRecord]) -> Snapshot:
        """Take the snapshot the batch ``records`` is looked up in: the follower's latest, or the one after
        the follower caught up (at most ``wait_s``) when the latest does not hold a version a record
        names, or when the follower has not read the topic to its end yet (a restored join entry names
        a version that no record of the batch does)."""
        snapshot = self.follower.snapshot
        unknown = {key for key in map(self.named, records) if key is not None and not snapshot.has(*key)}
        now = self.clock()
        due = any(now - self.missed.get(key, float("-inf")) >= self.refresh_s for key in unknown)
        if due or not snapshot.complete:
            try:
                snapshot = self.follower.catch_up(self.wait_s)
            except TimeoutError as exc:
                log.warning("versions %s are unknown and %s; the batch goes on without them", sorted(unknown), exc)
                snapshot = self.follower.snapshot
            self.missed = {key: at for key, at in self.missed.items() if now - at < self.refresh_s}
            self.missed.update((key, now) for key in unknown if not snapshot.has(*key))
        self.snapshot = snapshot
        return snapshot

    def before(self, process: Callable[[list[SourceRecord]], P]) -> Callable[[list[SourceRecord]], P]:
        """``process`` (a core's) with the batch's snapshot taken before each call."""

        def pinned(records: list[SourceRecord]) -> P:
            self.pin(records)
            return process(records)

        return pinned
