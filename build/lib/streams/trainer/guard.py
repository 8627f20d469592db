"""The rollback guard: a newly serving version against its predecessor, on the outcome stream (no Kafka).

When a version that replaced another (its lineage's ``parent_version``) has served ``outcomes``
labeled outcomes, its accuracy over them is compared with the predecessor's over its last
``outcomes``. Worse by more than ``margin``, and the guard asks for the predecessor back. Each
version is judged once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from models import ModelVersion
from streams.quality import SlidingMean

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


class RollbackGuard:
    """Judges each newly serving version once.

    Args:
        outcomes: labeled outcomes in each side of the comparison.
        margin: accuracy drop that rolls a version back.
        lookup: the registered version ``(model, version)``; raises KeyError for an unknown one.
    """

    def __init__(self, outcomes: int, margin: float, lookup: Callable[[str, int], ModelVersion]) -> None:
        self.outcomes, self.margin, self.lookup = outcomes, margin, lookup
        self.recent: dict[tuple[str, int], SlidingMean] = {}
        self.first: dict[tuple[str, int], SlidingMean] = {}
        self.judged: set[tuple[str, int]] = set()

    def add(self, outcome: dict[str, Any]) -> Verdict | None:
        """Count one served outcome; a verdict when it completes a comparison that fails."""
        if outcome["shadow"]:
            return None
        key = (outcome["model_name"], outcome["model_version"])
        correct = 1.0 if outcome["correct"] else 0.0
        self.recent.setdefault(key, SlidingMean(self.outcomes)).add(correct)
        if key in self.judged:
            return None
        parent: int | None = self.lookup(*key).lineage.get("parent_version")
        before = self.recent.get((key[0], parent)) if parent is not None else None
        if parent is None or before is None or len(before) < self.outcomes:
            return None  # nothing to compare with: the first version, or a predecessor seen too little
        first = self.first.setdefault(key, SlidingMean(self.outcomes))
        first.add(correct)
        if len(first) < self.outcomes:
            return None
        self.judged.add(key)
        if first.mean < before.mean - self.margin:
            return Verdict(key[0], key[1], parent, first.mean, before.mean)
        return None
