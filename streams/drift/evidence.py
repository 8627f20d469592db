"""What drift monitors have seen, and the evidence a detection carries (no Kafka).

A :class:`Span` follows the records a version's monitors were updated with: the time of the first
one and, per topic partition, the offsets from the first to the last. The evidence of a detection
is the span up to the record that fired it, with the detector's statistics: enough to find every
record the detection rests on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loopline.drift.monitor import Detection
from loopline.records import SourceRecord

__all__ = ["Span"]


class Span:
    """What monitors have seen: the time of their first record and the offset range per partition."""

    def __init__(self) -> None:
        self.first_ms: int | None = None
        self.ranges: dict[tuple[str, int], tuple[int, int]] = {}

    def saw(self, records: Sequence[SourceRecord]) -> None:
        """Add a batch the monitors were updated with."""
        self.ranges = self._ranges(records)
        if records and self.first_ms is None:
            self.first_ms = records[0].timestamp_ms

    def state(self) -> dict[str, Any]:
        return {"first_ms": self.first_ms, "ranges": [[*tp, *span] for tp, span in self.ranges.items()]}

    @classmethod
    def load(cls, state: dict[str, Any]) -> Span:
        span = cls()
        span.first_ms = state["first_ms"]
        span.ranges = {(topic, partition): (start, end) for topic, partition, start, end in state["ranges"]}
        return span

    def _ranges(self, records: Sequence[SourceRecord]) -> dict[tuple[str, int], tuple[int, int]]:
        ranges = dict(self.ranges)
        for record in records:
            tp = (record.topic, record.partition)
            ranges[tp] = (ranges[tp][0] if tp in ranges else record.offset, record.offset)
        return ranges

    def evidence(self, kind: str, detector: str, detection: Detection, batch: Sequence[SourceRecord]) -> dict[str, Any]:
        """The evidence of ``detection``: everything seen up to the record that fired it."""
        seen = batch[: detection.index + 1]
        first_ms = self.first_ms if self.first_ms is not None else seen[0].timestamp_ms
        return {
            "kind": kind,
            "detector": detector,
            "feature": detection.column,
            "statistics": detection.statistics,
            "window_start": first_ms,
            "window_end": seen[-1].timestamp_ms,
            "samples": detection.samples,
            "offsets": [
                {"topic": topic, "partition": partition, "start": start, "end": end}
                for (topic, partition), (start, end) in sorted(self._ranges(seen).items())
            ],
        }
