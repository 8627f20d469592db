"""The inference core: one micro-batch of feature records in, predictions and dead letters out.

No Kafka here: the agent shell hands over consumed records and sends what comes back. New model
versions are staged at any time, from any thread, and swapped in at the start of the next batch (on
the thread that serves), so a batch is always served by one version from start to end, but for the
rows that version fails on at run time. The hand-over is one dict under a lock: ``stage`` writes
into it, ``swap`` takes it whole and leaves an empty one, so a version staged while a swap runs is
swapped in by the next one.

A serving version comes with its fallbacks: the same version on the CPU when it runs on a GPU, and
the previous good version. When the backend raises on a batch (a CUDA error, out of memory, a row
the graph can't take), the batch is split in halves until each failing row is alone; those rows
are served by the first fallback that takes them, each prediction marked with the version that
made it, and only a row that nothing serves is a dead letter (``backend-error``). A backend that
fails on a whole batch and on the probe batch too is broken, not the rows: the batch goes to the
fallback whole, and when that is the serving backend the worker serves the fallback from then on,
until the next version is staged. A shadow version that fails
is skipped for that batch: it never costs the serving path a prediction.

A canary version serves the rows whose entity falls in its share (:mod:`loopline.inference.split`)
instead of the serving version, which (with its fallbacks) is the canary's fallback: a row the
canary fails on is served by the serving version, and a canary whose backend breaks is dropped
until the next version is staged.
"""

from __future__ import annotations

import logging
import operator
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from loopline.codec.features import FeatureBatch
from loopline.deadletters import DeadLetters
from loopline.inference.loader import LoadedModel, are_probabilities, probe_batch
from loopline.inference.split import canary_rows
from loopline.records import KeyValue, Produced, SourceRecord, Topic

__all__ = ["BatchOutput", "InferenceCore", "NotServing", "where"]

log = logging.getLogger(__name__)

PROBE_ROWS = 8
"""Rows of the probe batch that tells a broken backend from rows it can't take."""


class NotServing(RuntimeError):
    """No version serves yet: the batch must wait."""


@dataclass
class BatchOutput(Produced):
    """What one batch produced. Every input record is in exactly one of predictions and dead_letters."""

    version: int | None = None
    canary_version: int | None = None
    shadow_version: int | None = None
    inference_s: float = 0.0
    shadow_inference_s: float = 0.0
    latencies_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    served_by: dict[int, int] = field(default_factory=dict)
    """Predictions per version that made them."""
    fallback_rows: dict[tuple[int, str], int] = field(default_factory=dict)
    """Rows a version failed on at run time, per (that version, the ``<version>/<device>`` that served
    them instead; ``none``: dead-lettered)."""
    switched_to: LoadedModel | None = None
    """The fallback the worker serves from this batch on, when the serving backend broke."""
    canary_dropped: bool = False
    """The canary's backend broke: its rows went to the serving version, and it serves no more."""
    shadow_failed: bool = False

    @property
    def predictions(self) -> list[KeyValue]:
        return self.to(Topic.PREDICTIONS)

    @property
    def shadow_predictions(self) -> list[KeyValue]:
        return self.to(Topic.SHADOW_PREDICTIONS)


_NONE = np.zeros((0, 0), dtype=np.float32)
_TIMESTAMP = operator.itemgetter(5)  # a SourceRecord's timestamp_ms

Scored = tuple[LoadedModel, np.ndarray, np.ndarray]
"""A model, the batch rows it scored, and their scores."""


def _predict(model: LoadedModel, matrix: np.ndarray,
             rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, bool]:  # fmt: skip
    """Score ``matrix[rows]`` with ``model``; a batch that fails is halved until each failing row is alone,
    unless the backend fails on the probe batch too: then it is broken, and not tried row by row.

    Returns:
        The rows scored, their scores, the rows that failed (all, when broken), the last error, and
        whether the backend is broken.
    """
    try:
        return rows, model.backend.predict(matrix[rows]), rows[:0], "", False
    except Exception as exc:  # any runtime's failure: the rows, or the backend?
        error = f"{type(exc).__name__}: {exc}"
    if _broken(model):
        return rows[:0], _NONE, rows, error, True
    return (*_halve(model, matrix, rows, error), False)


def _halve(model: LoadedModel, matrix: np.ndarray, rows: np.ndarray,
           error: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:  # fmt: skip
    """``matrix[rows]``, which failed as a whole with ``error``: each half scored, or halved again, until
    each failing row is alone. Returns the rows scored, their scores, the rows failed and the last error."""
    if len(rows) == 1:
        return rows[:0], _NONE, rows, error
    parts = []
    for half in (rows[: len(rows) // 2], rows[len(rows) // 2 :]):
        try:
            parts.append((half, model.backend.predict(matrix[half]), half[:0], ""))
        except Exception as exc:  # this half holds a failing row
            parts.append(_halve(model, matrix, half, f"{type(exc).__name__}: {exc}"))
    scored = [part for part in parts if len(part[0])]
    return (np.concatenate([part[0] for part in parts]),
            np.concatenate([part[1] for part in scored]) if scored else _NONE,
            np.concatenate([part[2] for part in parts]), parts[1][3] or parts[0][3] or error)  # fmt: skip


def _broken(model: LoadedModel) -> bool:
    """Whether ``model``'s backend fails on the probe batch, which it passed when it was loaded."""
    try:
        model.backend.predict(probe_batch(PROBE_ROWS, len(model.version.feature_names), model.decoder.inputs))
    except Exception:
        return True
    return False


def where(model: LoadedModel) -> str:
    """``<version>/<device>``: which version served, and on what."""
    return f"{model.version.version}/{model.backend.info.device}"


class InferenceCore:
    """Serves one model: the serving version (with its fallbacks) and, optionally, a shadow version.

    Args:
        clock_ms: the wall clock in epoch milliseconds (replaceable in tests).
        on_swap: called with the role and the model (None: removed) of each staged version as it is
            swapped in, on the thread that swaps.
    """

    def __init__(
        self,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        on_swap: Callable[[str, LoadedModel | None], None] = lambda role, model: None,
    ) -> None:
        self.serving: LoadedModel | None = None
        self.fallbacks: list[LoadedModel] = []
        self.canary: LoadedModel | None = None
        self.shadow: LoadedModel | None = None
        self._staged: dict[str, tuple[LoadedModel | None, list[LoadedModel]]] = {}
        self._staging = threading.Lock()
        self.dead = DeadLetters("inference")
        self.clock_ms, self.on_swap = clock_ms, on_swap

    def stage(self, role: str, model: LoadedModel | None, fallbacks: Sequence[LoadedModel] = ()) -> None:
        """Swap ``model`` in as ``role`` (``serving``, ``canary`` at its version's traffic, or ``shadow``;
        None removes a canary or shadow) next batch; a serving version with the ``fallbacks`` that serve
        the rows it fails on, in order. Safe from any thread."""
        if role not in ("serving", "canary", "shadow") or (role == "serving" and model is None):
            raise ValueError(f"can't stage {model!r} as {role}")
        with self._staging:
            self._staged[role] = (model, list(fallbacks))

    def swap(self) -> None:
        """Apply the staged versions now (done at the start of every batch, on the thread that serves)."""
        with self._staging:
            staged, self._staged = self._staged, {}
        for role, (model, fallbacks) in staged.items():
            setattr(self, role, model)
            if role == "serving":
                self.fallbacks = fallbacks
            self.on_swap(role, model)

    @property
    def ready(self) -> bool:
        """Whether a version serves (or is staged to)."""
        with self._staging:
            return self.serving is not None or "serving" in self._staged

    def process(self, records: Sequence[SourceRecord]) -> BatchOutput:
        """Serve one batch.

        Raises:
            NotServing: no version is loaded yet.
        """
        self.swap()
        serving = self.serving
        if serving is None:
            raise NotServing("no model version serves yet")
        out = BatchOutput(version=serving.version.version)
        batch = serving.decoder.decode([record.value for record in records])
        for index, error in batch.errors:
            self.dead.add(out, records[index], error.reason, error.message)
        if not len(batch):
            return self._checked(out, records)
        start = time.perf_counter()
        parts, failed, failure = self._score_all(batch, out)
        out.inference_s = time.perf_counter() - start
        now = self.clock_ms()
        served: list[np.ndarray] = []
        for model, rows, scores in parts:
            served.append(self._serve(out, model, rows, scores, batch, records, now))
        for row in failed:
            self.dead.add(out, records[batch.index[row]], "backend-error",
                          f"version {serving.version.version} and its fallbacks failed on this row: {failure}")  # fmt: skip
        rows = np.sort(np.concatenate(served)) if served else np.zeros(0, dtype=np.int64)
        out.latencies_s = (now - batch.event_times[rows]) / 1000.0
        # A shadow or canary of another input than the serving version's can't score the rows decoded for
        # it: it is left out until one of the two changes.
        if self.shadow is not None and len(rows) and self.shadow.version.takes_input_of(serving.version):
            self._shadow(out, self.shadow, rows, batch, records, now)
        return self._checked(out, records)

    def _score_all(self, batch: FeatureBatch, out: BatchOutput) -> tuple[list[Scored], np.ndarray, str]:
        """The batch's rows with their scores: the canary's share by the canary, the rest (and the rows the
        canary fails on) by the serving version and its fallbacks; the rows nothing takes, and the last error."""
        assert self.serving is not None
        serving_chain = [self.serving, *self.fallbacks]
        rows, error, canary_failed = np.arange(len(batch)), "", np.zeros(0, dtype=np.int64)
        parts: list[Scored] = []
        canary = self.canary
        if canary is not None and not canary.version.takes_input_of(self.serving.version):
            canary = None
        if canary is not None:
            out.canary_version = canary.version.version
            share = canary_rows(canary.version.model_name, batch.entity_ids, batch.event_ids, canary.version.traffic)
            parts, canary_failed, error, broken = self._score([canary, *serving_chain], batch.matrix, rows[share], out)
            rows = rows[~share]
            if broken:
                out.canary_dropped, self.canary = True, None
                log.error("canary version %s fails on the probe batch too: its rows go to version %s until the "
                          "next version", where(canary), where(self.serving))  # fmt: skip
        served, failed, failure, broken = self._score(serving_chain, batch.matrix, rows, out)
        if served and broken:
            out.switched_to = served[0][0]
            log.error("version %s fails on the probe batch too: serving %s from now on, until the next version",
                      where(self.serving), where(out.switched_to))  # fmt: skip
            self.serving, self.fallbacks = out.switched_to, serving_chain[serving_chain.index(out.switched_to) + 1 :]
        return parts + served, np.concatenate([canary_failed, failed]), failure or error

    @staticmethod
    def _score(chain: list[LoadedModel], matrix: np.ndarray, rows: np.ndarray,
               out: BatchOutput) -> tuple[list[Scored], np.ndarray, str, bool]:  # fmt: skip
        """``matrix[rows]`` with their scores, by ``chain[0]`` and, for the rows it fails on, by the first of
        the rest that takes them; the rows nothing takes, the last error, and whether ``chain[0]`` broke."""
        parts: list[Scored] = []
        first, error, first_broken = chain[0], "", False
        for model in chain:
            if not len(rows):
                break
            scored, scores, rows, failure, broken = _predict(model, matrix, rows)
            first_broken = first_broken or (broken and model is first)
            error = failure or error
            if len(scored):
                parts.append((model, scored, scores))
                if model is not first:
                    out.fallback_rows[(first.version.version, where(model))] = len(scored)
        if len(rows):
            out.fallback_rows[(first.version.version, "none")] = len(rows)
        if error:
            log.warning("version %s failed at run time (%s); rows served instead: %s", where(first), error,
                        {served: n for (failed, served), n in out.fallback_rows.items()
                         if failed == first.version.version})  # fmt: skip
        return parts, rows, error, first_broken

    def _serve(self, out: BatchOutput, model: LoadedModel, rows: np.ndarray, scores: np.ndarray,
               batch: FeatureBatch, records: Sequence[SourceRecord], now: int) -> np.ndarray:  # fmt: skip
        """Predictions of ``model`` for the batch rows ``rows``; a row whose scores are not probabilities is a
        dead letter. Returns the rows predicted."""
        valid = are_probabilities(scores)
        for position in np.flatnonzero(~valid):
            reason = "not-probabilities" if np.isfinite(scores[position]).all() else "non-finite-output"
            self.dead.add(out, records[batch.index[rows[position]]], reason,
                          f"the model's scores {scores[position].tolist()} are not a probability distribution")  # fmt: skip
        kept = rows[valid]
        out.extend(Topic.PREDICTIONS, *self._encode(model, batch, kept, scores[valid], now, records, out.inference_s))
        version = model.version.version
        out.served_by[version] = out.served_by.get(version, 0) + len(kept)
        return kept

    def _shadow(self, out: BatchOutput, shadow: LoadedModel, rows: np.ndarray, batch: FeatureBatch,
                records: Sequence[SourceRecord], now: int) -> None:  # fmt: skip
        """The shadow version's predictions for the served ``rows``; nothing when its backend fails."""
        out.shadow_version = shadow.version.version
        start = time.perf_counter()
        try:
            scores = shadow.backend.predict(batch.matrix[rows])
        except Exception as exc:  # the shadow is never worth a served prediction
            out.shadow_failed = True
            log.warning("shadow version %s failed on a batch of %d rows, skipped: %r", where(shadow), len(rows), exc)
            return
        out.shadow_inference_s = time.perf_counter() - start
        ok = are_probabilities(scores)
        out.extend(Topic.SHADOW_PREDICTIONS,
                   *self._encode(shadow, batch, rows[ok], scores[ok], now, records, out.shadow_inference_s))  # fmt: skip

    @staticmethod
    def _checked(out: BatchOutput, records: Sequence[SourceRecord]) -> BatchOutput:
        if len(out.predictions) + len(out.dead_letters) != len(records):
            raise AssertionError("inference lost or duplicated a record")  # the batching contract
        return out

    @staticmethod
    def _encode(model: LoadedModel, batch: FeatureBatch, rows: np.ndarray, scores: np.ndarray, now: int,
                records: Sequence[SourceRecord],
                inference_s: float) -> tuple[list[KeyValue], list[SourceRecord | None]]:  # fmt: skip
        """The predictions of ``model`` for the batch rows ``rows``, keyed by event_id, and the input of each
        (a prediction copies its feature record's ids, so a record with huge ids makes one the topics
        can't take: the loop dead-letters that input in its place); each row's queue wait is from its
        record's Kafka timestamp to ``now``."""
        sources = list(map(records.__getitem__, batch.index[rows].tolist()))
        stamps = np.fromiter(map(_TIMESTAMP, sources), dtype=np.float64, count=len(rows))
        values = model.encoder.encode(batch, rows, scores, now, now - stamps, inference_s * 1000)
        return list(zip(batch.ids(rows), values, strict=True)), cast("list[SourceRecord | None]", sources)
