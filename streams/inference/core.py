"""The inference core: one micro-batch of feature records in, predictions and dead letters out.

No Kafka here: the agent shell hands over consumed records and sends what comes back. New model
versions are staged at any time and swapped in at the start of the next batch, so a batch is
always served by one version from start to end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from streams.deadletters import DeadLetters
from streams.inference.loader import LoadedModel, are_probabilities
from streams.records import KeyValue, Produced, SourceRecord, Topic

__all__ = ["BatchOutput", "InferenceCore", "NotServing"]

log = logging.getLogger(__name__)


class NotServing(RuntimeError):
    """No version serves yet: the batch must wait."""


@dataclass
class BatchOutput(Produced):
    """What one batch produced. Every input record is in exactly one of predictions and dead_letters."""

    version: int | None = None
    shadow_version: int | None = None
    inference_s: float = 0.0
    shadow_inference_s: float = 0.0
    latencies_s: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def predictions(self) -> list[KeyValue]:
        return self.to(Topic.PREDICTIONS)

    @property
    def shadow_predictions(self) -> list[KeyValue]:
        return self.to(Topic.SHADOW_PREDICTIONS)


class InferenceCore:
    """Serves one model: the serving version and, optionally, a shadow version on the same batches.

    Args:
        clock_ms: the wall clock in epoch milliseconds (replaceable in tests).
    """

    def __init__(self, clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.serving: LoadedModel | None = None
        self.shadow: LoadedModel | None = None
        self._staged: dict[str, LoadedModel | None] = {}
        self.dead = DeadLetters("inference")
        self.clock_ms = clock_ms

    def stage(self, role: str, model: LoadedModel | None) -> None:
        """Swap ``model`` in as ``role`` (``serving`` or ``shadow``; None removes the shadow) next batch."""
        if role not in ("serving", "shadow") or (role == "serving" and model is None):
            raise ValueError(f"can't stage {model!r} as {role}")
        self._staged[role] = model

    def swap(self) -> None:
        """Apply the staged versions now (done at the start of every batch)."""
        for role, model in self._staged.items():
            setattr(self, role, model)
        self._staged.clear()

    @property
    def ready(self) -> bool:
        """Whether a version serves (or is staged to)."""
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
        if len(batch):
            start = time.perf_counter()
            scores = serving.backend.predict(batch.matrix)
            out.inference_s = time.perf_counter() - start
            valid = are_probabilities(scores)
            now = self.clock_ms()
            rows = np.flatnonzero(valid)
            for row in np.flatnonzero(~valid):
                reason = "not-probabilities" if np.isfinite(scores[row]).all() else "non-finite-output"
                self.dead.add(out, records[batch.index[row]], reason,
                              f"the model's scores {scores[row].tolist()} are not a probability distribution")  # fmt: skip
            sources = [batch.index[r] for r in rows]
            event_ids = [batch.event_ids[r] for r in rows]
            entity_ids = [batch.entity_ids[r] for r in rows]
            event_times = batch.event_times[rows]
            waits = np.array([now - records[i].timestamp_ms for i in sources], dtype=np.float32)
            out.extend(
                Topic.PREDICTIONS,
                self._encode(serving, event_ids, event_times, entity_ids, scores[rows], now, waits, out.inference_s),
            )
            out.latencies_s = (now - event_times) / 1000.0
            if self.shadow is not None:
                out.shadow_version = self.shadow.version.version
                start = time.perf_counter()
                shadow_scores = self.shadow.backend.predict(batch.matrix[rows])
                out.shadow_inference_s = time.perf_counter() - start
                ok = are_probabilities(shadow_scores)
                out.extend(Topic.SHADOW_PREDICTIONS, self._encode(
                    self.shadow, [e for e, keep in zip(event_ids, ok, strict=True) if keep], event_times[ok],
                    [e for e, keep in zip(entity_ids, ok, strict=True) if keep], shadow_scores[ok], now, waits[ok],
                    out.shadow_inference_s,
                ))  # fmt: skip
        if len(out.predictions) + len(out.dead_letters) != len(records):
            raise AssertionError("inference lost or duplicated a record")  # the batching contract
        return out

    @staticmethod
    def _encode(
        model: LoadedModel,
        event_ids: list[str],
        event_times: np.ndarray,
        entity_ids: list[str],
        scores: np.ndarray,
        now: int,
        waits: np.ndarray,
        inference_s: float,
    ) -> list[KeyValue]:
        values = model.encoder.encode(event_ids, event_times, entity_ids, scores, now, waits, inference_s * 1000)
        return [(event_id.encode(), value) for event_id, value in zip(event_ids, values, strict=True)]
