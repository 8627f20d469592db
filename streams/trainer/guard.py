"""The rollback guard: a newly serving version against its predecessor, on the outcome stream (no Kafka).

When a version that replaced another (its lineage's ``parent_version``) has served ``outcomes``
labeled outcomes, its accuracy over them is compared with the predecessor's over its last
``outcomes``. Worse by more than ``margin``, and the guard asks for the predecessor back. Each
version is judged once.

State
-----
Outcomes are keyed by model name, so every outcome of a model, of all its versions, lands in one
outcomes partition: the guard keeps its windows per partition number, and
:meth:`RollbackGuard.changes` hands out, after each batch, the keys of each partition's state that
changed, for a store to save with the batch; :meth:`RollbackGuard.restore` takes them back, so that
a comparison under way when a worker stopped is finished by the next one, and a version judged
stays judged. One key per version seen, the model name JSON-encoded (so a ``/`` in it is no
separator), the value JSON:

- ``v/<model>/<version>``: ``{"format": 1, "recent": window, "first": window or null, "judged":
  bool}``: its last outcomes, its first ones once it has a predecessor to be compared with, and
  whether it was judged; a window is :meth:`SlidingMean.state` (its correct flags, 1.0 or 0.0).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from loopline.models import ModelVersion
from loopline.quality import SlidingMean

__all__ = ["RollbackGuard", "Verdict"]


@dataclass(frozen=True)
class Verdict:
    """Version ``version`` of ``model_name`` did worse than ``predecessor`` and should be rolled back."""

    model_name: str
    version: int
    predecessor: int
    accuracy: float
    predecessor_accuracy: float

    @property
    def reason(self) -> str:
        return (f"online accuracy {self.accuracy:.4f} over its first outcomes against version {self.predecessor}'s "
                f"{self.predecessor_accuracy:.4f}")  # fmt: skip


@dataclass
class PartitionState:
    """The windows of the versions whose outcomes land in one partition, and which changed since the last save."""

    recent: dict[tuple[str, int], SlidingMean] = field(default_factory=dict)
    first: dict[tuple[str, int], SlidingMean] = field(default_factory=dict)
    judged: set[tuple[str, int]] = field(default_factory=set)
    dirty: set[tuple[str, int]] = field(default_factory=set)


class RollbackGuard:
    """Judges each newly serving version once.

    Args:
        outcomes: labeled outcomes in each side of the comparison.
        margin: accuracy drop that rolls a version back.
        lookup: the registered version ``(model, version)``; raises KeyError for an unknown one.
    """

    def __init__(self, outcomes: int, margin: float, lookup: Callable[[str, int], ModelVersion]) -> None:
        self.outcomes, self.margin, self.lookup = outcomes, margin, lookup
        self.partitions: dict[int, PartitionState] = {}

    def add(self, outcome: dict[str, Any], partition: int) -> Verdict | None:
        """Count one served outcome, read from ``partition``; a verdict when it completes a comparison that fails."""
        if outcome["shadow"]:
            return None
        part = self.partitions.get(partition)
        if part is None:
            part = self.partitions[partition] = PartitionState()
        key = (outcome["model_name"], outcome["model_version"])
        correct = 1.0 if outcome["correct"] else 0.0
        part.recent.setdefault(key, SlidingMean(self.outcomes)).add(correct)
        part.dirty.add(key)
        if key in part.judged:
            return None
        parent: int | None = self.lookup(*key).lineage.get("parent_version")
        before = part.recent.get((key[0], parent)) if parent is not None else None
        if parent is None or before is None or len(before) < self.outcomes:
            return None  # nothing to compare with: the first version, or a predecessor seen too little
        first = part.first.setdefault(key, SlidingMean(self.outcomes))
        first.add(correct)
        if len(first) < self.outcomes:
            return None
        part.judged.add(key)
        if first.mean < before.mean - self.margin:
            return Verdict(key[0], key[1], parent, first.mean, before.mean)
        return None

    def changes(self) -> dict[int, dict[bytes, bytes | None]]:
        """Per partition, the keys of its state that changed since the last call; call it after each batch."""
        changed: dict[int, dict[bytes, bytes | None]] = {}
        for number, part in self.partitions.items():
            if part.dirty:
                changed[number] = {_key(*key): _dump(part, key) for key in part.dirty}
                part.dirty.clear()
        return changed

    def restore(self, partition: int, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Rebuild the state of ``partition`` from every key :meth:`changes` left for it, in any order.

        Raises:
            ValueError: a key in a format this code does not know.
        """
        part = self.partitions[partition] = PartitionState()
        for raw_key, value in items:
            model, end = _JSON.raw_decode(raw_key.decode("ascii"), 2)
            key = (model, int(raw_key[end + 1 :]))
            head = json.loads(value)
            if head.get("format") != 1:
                raise ValueError(f"unknown state format {head.get('format')!r}")
            part.recent[key] = _window(self.outcomes, head["recent"])
            if head["first"] is not None:
                part.first[key] = _window(self.outcomes, head["first"])
            if head["judged"]:
                part.judged.add(key)

    def revoke(self, partitions: Iterable[int]) -> None:
        """Forget the state of ``partitions`` (another worker reads them now), unsaved changes included."""
        for partition in partitions:
            self.partitions.pop(partition, None)


_JSON = json.JSONDecoder()


def _key(model: str, version: int) -> bytes:
    """``v/<model>/<version>``, the model name JSON (ASCII only), so that a ``/`` in it is no separator."""
    return b"v/%s/%d" % (json.dumps(model).encode(), version)


def _dump(part: PartitionState, key: tuple[str, int]) -> bytes:
    first = part.first.get(key)
    head = {"format": 1, "recent": part.recent[key].state(), "first": None if first is None else first.state(),
            "judged": key in part.judged}  # fmt: skip
    return json.dumps(head, separators=(",", ":")).encode()


def _window(size: int, state: dict[str, Any]) -> SlidingMean:
    window = SlidingMean(size)
    window.load(state)
    return window
