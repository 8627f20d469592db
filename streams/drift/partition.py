"""The drift state of one input partition number, and the keys it is saved under (no Kafka).

Everything is kept per input partition number (the ``partition`` of each record): the outcome
monitors, quality windows, outcome count and last request of the models whose outcomes land in
it, and the prediction monitors of the predictions it holds. :meth:`PartitionState.save` hands
out the keys that changed, for a store to save with the batch; :meth:`PartitionState.load`
rebuilds a partition from all its keys, and the core then goes on exactly as the one that saved
them would have (up to the monitors' history caps). Keys are ASCII, the model name JSON-encoded
(so a ``/`` in it is no separator):

- ``m/<model>``: ``{"format": 1, "outcomes_seen": n, "requested_at": position or null, "recovery":
  recovery or null}``, the outcomes of the model seen so far, the position of its last retrain
  request (the cooldown) and its recovery (:meth:`Recovery.state`; absent in older states).
- ``q/<model>/<version>/<shadow 0|1>``: ``{"format": 1, "accuracy": window, "log_loss": window}``,
  the quality windows (:meth:`SlidingMean.state`).
- ``w/<model>/<version>/head``: ``{"format": 1, "order": n, "outcomes": span, "predictions": span}``,
  a version's watch: ``order`` ranks the watches by creation, which eviction goes by; a span is
  ``{"first_ms": time or null, "ranges": [[topic, partition, start, end], ...]}``, what the
  monitors saw, for evidence (:class:`~loopline.drift.evidence.Span`).
- ``w/<model>/<version>/<monitor>/<key>``: the state of its ``errors`` and ``features`` (outcome)
  and ``scores`` (prediction) monitors, under the keys of :mod:`loopline.drift.monitor`.

A watch evicted (beyond :data:`VERSIONS_KEPT`) has its keys deleted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from loopline.drift.evidence import Span
from loopline.drift.monitor import BlockMonitor, ErrorMonitor
from loopline.drift.recovery import Recovery
from loopline.drift.state import Changes, dump_head, load_head
from loopline.quality import SlidingMean
from loopline.settings import DriftSettings

__all__ = ["VERSIONS_KEPT", "PartitionState", "VersionWatch", "error_monitor", "feature_monitor", "score_monitor"]

Monitor = TypeVar("Monitor", ErrorMonitor, BlockMonitor)
"""Either monitor: restoring one gives back the same kind."""

VERSIONS_KEPT = 4  # watches kept per model and partition: the serving version and a few it replaced


def error_monitor(settings: DriftSettings) -> ErrorMonitor:
    """A fresh concept drift monitor on a version's errors."""
    s = settings
    return ErrorMonitor(s.concept_detector, s.concept_params, s.min_samples, s.recent_samples)


def feature_monitor(settings: DriftSettings, columns: Sequence[str]) -> BlockMonitor:
    """A fresh covariate drift monitor on a version's feature ``columns``."""
    s = settings
    return BlockMonitor(columns, s.covariate_detector, s.covariate_params, s.min_samples, s.block_size,
                        s.recent_samples)  # fmt: skip


def score_monitor(settings: DriftSettings, classes: Sequence[str]) -> BlockMonitor:
    """A fresh prediction drift monitor on a version's scores, one column per class."""
    s = settings
    return BlockMonitor(classes, s.prediction_detector, s.prediction_params, s.min_samples, s.block_size,
                        s.recent_samples)  # fmt: skip


@dataclass
class VersionWatch:
    """The monitors of one serving model version in one partition: two on its outcomes, one on its predictions."""

    order: int
    """Watches made in the partition before this one: eviction drops the oldest."""
    errors: ErrorMonitor | None = None
    features: BlockMonitor | None = None
    outcomes: Span = field(default_factory=Span)
    scores: BlockMonitor | None = None
    predictions: Span = field(default_factory=Span)

    def monitors(self) -> dict[bytes, ErrorMonitor | BlockMonitor]:
        found = {b"errors": self.errors, b"features": self.features, b"scores": self.scores}
        return {name: monitor for name, monitor in found.items() if monitor is not None}


@dataclass
class PartitionState:
    """What the records of one input partition number built, and what of it is still to be saved."""

    watches: dict[tuple[str, int], VersionWatch] = field(default_factory=dict)
    quality: dict[tuple[str, int, bool], tuple[SlidingMean, SlidingMean]] = field(default_factory=dict)
    outcomes_seen: dict[str, int] = field(default_factory=dict)
    requested_at: dict[str, int] = field(default_factory=dict)
    recovery: dict[str, Recovery] = field(default_factory=dict)
    made: int = 0
    """Watches made so far (the next one's order)."""
    stored: set[bytes] = field(default_factory=set)
    """The keys saved."""
    dirty: set[tuple[Any, ...]] = field(default_factory=set)
    """What changed since the last save: ("w", model, version), ("q", model, version, shadow), ("m", model)."""
    stale: set[bytes] = field(default_factory=set)
    """Prefixes of keys to delete at the next save (evicted watches, monitors that were not restored)."""

    def watch(self, model: str, version: int) -> VersionWatch:
        """The watch of ``(model, version)``, made when there is none; making one evicts the model's
        oldest beyond :data:`VERSIONS_KEPT`."""
        key = (model, version)
        watch = self.watches.get(key)
        if watch is None:
            watch = self.watches[key] = VersionWatch(self.made)
            self.made += 1
            mine = [k for k in self.watches if k[0] == model]
            for old in mine[:-VERSIONS_KEPT]:
                del self.watches[old]
                self.stale.add(_watch_prefix(*old))
        return watch

    def save(self) -> Changes:
        """The keys that changed since the last call (None: deleted)."""
        changed: Changes = {}
        head: dict[str, Any]
        for prefix in self.stale:
            changed.update((key, None) for key in self.stored if key.startswith(prefix))
        for item in self.dirty:
            kind, model = item[0], item[1]
            if kind == "m":
                recovery = self.recovery.get(model)
                head = {"outcomes_seen": self.outcomes_seen[model], "requested_at": self.requested_at.get(model),
                        "recovery": None if recovery is None else recovery.state()}  # fmt: skip
                changed[b"m/" + _name(model)] = dump_head(head)
            elif kind == "q":
                accuracy, loss = self.quality[item[1:]]
                head = {"accuracy": accuracy.state(), "log_loss": loss.state()}
                changed[b"q/%s/%d/%d" % (_name(model), item[2], item[3])] = dump_head(head)
            elif (watch := self.watches.get(item[1:])) is not None:  # not evicted since
                prefix = _watch_prefix(model, item[2])
                head = {"order": watch.order, "outcomes": watch.outcomes.state(),
                        "predictions": watch.predictions.state()}  # fmt: skip
                changed[prefix + b"head"] = dump_head(head)
                for name, monitor in watch.monitors().items():
                    changed.update((prefix + name + b"/" + key, value) for key, value in monitor.changes().items())
        self.dirty.clear()
        self.stale.clear()
        for key, value in changed.items():
            if value is None:
                self.stored.discard(key)
            else:
                self.stored.add(key)
        return changed

    def load(self, items: Iterable[tuple[bytes, bytes]], settings: DriftSettings) -> None:
        """Take every key :meth:`save` left, in any order, into this fresh state; monitors saved under
        other ``settings`` start afresh (their keys deleted at the next save).

        Raises:
            ValueError: a key in a format this code does not know.
        """
        watches: dict[tuple[str, int], dict[bytes, dict[bytes, bytes]]] = {}
        for key, value in items:
            self.stored.add(key)
            kind, model, rest = _parse(key)
            if kind == b"m":
                head = load_head(value)
                self.outcomes_seen[model] = head["outcomes_seen"]
                if head["requested_at"] is not None:
                    self.requested_at[model] = head["requested_at"]
                if head.get("recovery") is not None:
                    self.recovery[model] = Recovery.load(head["recovery"])
            elif kind == b"q":
                head = load_head(value)
                windows = SlidingMean(settings.quality_window), SlidingMean(settings.quality_window)
                windows[0].load(head["accuracy"])
                windows[1].load(head["log_loss"])
                self.quality[(model, int(rest[0]), rest[1] == b"1")] = windows
            else:
                version, name, *tail = rest
                watches.setdefault((model, int(version)), {}).setdefault(name, {})[b"/".join(tail)] = value
        restored = [(key, self._restored(key, parts, settings)) for key, parts in watches.items()]
        for watch_key, watch in sorted(restored, key=lambda kw: kw[1].order):
            self.watches[watch_key] = watch
        self.made = max((watch.order for watch in self.watches.values()), default=-1) + 1

    def _restored(
        self, key: tuple[str, int], parts: dict[bytes, dict[bytes, bytes]], settings: DriftSettings
    ) -> VersionWatch:
        """The watch ``key`` from its keys, grouped by monitor (``b"head"`` for its own)."""
        head = load_head(parts[b"head"][b""])
        watch = VersionWatch(
            head["order"], outcomes=Span.load(head["outcomes"]), predictions=Span.load(head["predictions"])
        )
        prefix = _watch_prefix(*key)
        if b"errors" in parts:
            watch.errors = self._loaded(prefix + b"errors/", error_monitor(settings), parts[b"errors"])
        if b"features" in parts:
            monitor = feature_monitor(settings, _columns(parts[b"features"]))
            watch.features = self._loaded(prefix + b"features/", monitor, parts[b"features"])
        if b"scores" in parts:
            monitor = score_monitor(settings, _columns(parts[b"scores"]))
            watch.scores = self._loaded(prefix + b"scores/", monitor, parts[b"scores"])
        return watch

    def _loaded(self, prefix: bytes, monitor: Monitor, items: dict[bytes, bytes]) -> Monitor | None:
        """``monitor`` loaded from ``items``; None when they were saved under other settings (deleted at the next save)."""
        if monitor.load(items):
            return monitor
        self.stale.add(prefix)
        return None


_JSON = json.JSONDecoder()


def _name(model: str) -> bytes:
    """The model name in keys: JSON, ASCII only, so that a ``/`` in it is no separator."""
    return json.dumps(model).encode()


def _watch_prefix(model: str, version: int) -> bytes:
    return b"w/%s/%d/" % (_name(model), version)


def _parse(key: bytes) -> tuple[bytes, str, list[bytes]]:
    """A key's kind (``m``, ``q`` or ``w``), model name, and the parts after the name."""
    model, end = _JSON.raw_decode(key.decode("ascii"), 2)
    return key[:1], model, key[end + 1 :].split(b"/") if end < len(key) else []


def _columns(items: dict[bytes, bytes]) -> list[str]:
    """The columns of the block monitor saved as ``items``."""
    columns: list[str] = load_head(items[b"head"])["config"]["columns"]
    return columns
