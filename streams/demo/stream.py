"""The demo's synthetic stream: feature events and late labels with a concept drift and a covariate drift at known points."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from loopline.codec import Codec
from loopline.models.datasets import Concept, sample
from loopline.settings import DemoSettings

__all__ = ["DemoStream", "Step", "malformed"]

N_FEATURES = 8
SHIFTED_FEATURE = 3


@dataclass(frozen=True)
class Step:
    """One slice of the stream: features to send now, and the labels that became known now."""

    features: list[tuple[str, bytes]]
    labels: list[tuple[str, bytes]]
    first_event: int


class DemoStream:
    """Events ``0 .. events-1``: concept A, then concept B from ``concept_drift_at``, and feature
    ``x3`` moved by ``covariate_shift`` standard deviations from ``covariate_drift_at``. The label
    of event ``i`` is sent with event ``i + label_delay``."""

    def __init__(self, settings: DemoSettings) -> None:
        self.settings = settings
        self.before, self.after = Concept(seed=0, n_features=N_FEATURES), Concept(seed=1, n_features=N_FEATURES)
        self.features_codec, self.label_codec = Codec.load("features"), Codec.load("label")

    def steps(self, chunk: int, start_ms: int, ms_per_event: float) -> Iterator[Step]:
        """The stream in slices of ``chunk`` events; event ``i`` happens at ``start_ms + i * ms_per_event``."""
        s = self.settings
        pending: list[tuple[int, str, str]] = []  # (event index, event_id, label) waiting for their delay
        for first in range(0, s.events + s.label_delay, chunk):
            count = max(0, min(chunk, s.events - first))
            features = []
            if count:
                shift = {SHIFTED_FEATURE: s.covariate_shift} if first >= s.covariate_drift_at else None
                x, _ = sample(self.before, count, seed=s.seed + first, shift=shift)
                concept = self.after if first >= s.concept_drift_at else self.before
                truth = concept.label(x)
                for i, (values, label) in enumerate(zip(x.tolist(), truth.tolist(), strict=True)):
                    event_id = str(uuid.uuid4())
                    record = {"event_id": event_id, "event_time": start_ms + int((first + i) * ms_per_event),
                              "entity_id": f"entity-{(first + i) % 100}", "values": values}  # fmt: skip
                    features.append((event_id, self.features_codec.encode(record)))
                    pending.append((first + i, event_id, ["no", "yes"][label]))
            due = [p for p in pending if p[0] + s.label_delay < first + chunk]
            pending = [p for p in pending if p[0] + s.label_delay >= first + chunk]
            labels = [(event_id, self.label_codec.encode({"event_id": event_id, "label": label,
                                                          "event_time": start_ms + int((index + s.label_delay) * ms_per_event)}))
                      for index, event_id, label in due]  # fmt: skip
            yield Step(features, labels, first)


def malformed() -> list[tuple[str, bytes]]:
    """Three feature events no model can take: not Avro, a truncated record, a vector of the wrong length."""
    codec = Codec.load("features")
    short = codec.encode({"event_id": "bad-length", "event_time": 0, "entity_id": "e", "values": [1.0, 2.0]})
    return [("bad-bytes", b"not avro at all"), ("bad-truncated", short[:12]), ("bad-length", short)]
