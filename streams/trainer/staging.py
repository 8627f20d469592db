"""Shadow staging: a gated candidate serves in shadow until the live labels judge it (no Kafka).

With ``LOOPLINE_TRAINER_STAGING_OUTCOMES`` set, a candidate that passes the offline gate is
published as a shadow version carrying that number in its metrics (``staging_outcomes``). The
inference workers run it on every batch beside the serving version and the join gives both their
labeled outcomes. :class:`Staging` pairs them by event id (in whichever order they come) and, once
the staged version has ``staging_outcomes`` outcomes on events that the serving version also
served, applies the trainer's gate (:func:`loopline.trainer.gate.gate`) to the pairs: a staged
version that does better by more than the noise is promoted, any other is rejected, with the
figures. Each staged version is judged once. A version put in shadow by hand carries no
``staging_outcomes`` and is never judged.

The pairing lives in memory: a worker that restarts counts the pairs again from the outcomes it
reads after its committed offsets, so a restart delays a verdict and never decides on half a pair.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loopline.models import ModelVersion, Status
from loopline.settings import TrainerSettings
from loopline.trainer.gate import gate

__all__ = ["STAGING_METRIC", "Staging", "StagingVerdict"]

STAGING_METRIC = "staging_outcomes"
"""The metric of a staged version: how many paired outcomes judge it."""


@dataclass(frozen=True)
class StagingVerdict:
    """The live verdict on staged version ``version`` of ``model_name``."""

    model_name: str
    version: int
    passed: bool
    figures: str


@dataclass
class _Pairs:
    """Outcomes of one staged version waiting for their other half, and the pairs made."""

    waiting: OrderedDict[str, bool] = field(default_factory=OrderedDict)
    paired: set[str] = field(default_factory=set)
    """Event ids paired already: an outcome read twice (at-least-once) counts once."""
    staged: list[bool] = field(default_factory=list)
    serving: list[bool] = field(default_factory=list)


class Staging:
    """Judges staged shadow versions on the outcomes they and the serving version get on the same events.

    Args:
        settings: the gate's settings (margin, standard errors, floor).
        lookup: the registered version ``(model, version)``; raises KeyError for an unknown one.
        memory: outcomes kept per side while their other half has not come (oldest forgotten first).
    """

    def __init__(self, settings: TrainerSettings, lookup: Callable[[str, int], ModelVersion],
                 memory: int = 20_000) -> None:  # fmt: skip
        self.settings, self.lookup, self.memory = settings, lookup, memory
        self.served: dict[str, OrderedDict[str, bool]] = {}  # model → event id → correct, serving side
        self.pairs: dict[tuple[str, int], _Pairs] = {}
        self.judged: set[tuple[str, int]] = set()

    def add(self, outcome: dict[str, Any]) -> StagingVerdict | None:
        """Count one labeled outcome; a verdict when it completes a staged version's pairs."""
        model, event, correct = outcome["model_name"], outcome["event_id"], bool(outcome["correct"])
        if not outcome["shadow"]:
            served = self.served.setdefault(model, OrderedDict())
            _remember(served, event, correct, self.memory)
            for key, pairs in self.pairs.items():
                if key[0] == model and key not in self.judged and event in pairs.waiting:
                    verdict = self._pair(key, pairs, event, pairs.waiting.pop(event), correct)
                    if verdict is not None:
                        return verdict
            return None
        key = (model, outcome["model_version"])
        if key in self.judged or not self._staged(key):
            return None
        pairs = self.pairs.setdefault(key, _Pairs())
        serving = self.served.get(model, OrderedDict()).get(event)
        if serving is None:
            _remember(pairs.waiting, event, correct, self.memory)
            return None
        return self._pair(key, pairs, event, correct, serving)

    def _staged(self, key: tuple[str, int]) -> bool:
        try:
            version = self.lookup(*key)
        except KeyError:
            return False
        return version.status == Status.SHADOW and STAGING_METRIC in version.metrics

    def _pair(self, key: tuple[str, int], pairs: _Pairs, event: str, staged: bool,
              serving: bool) -> StagingVerdict | None:  # fmt: skip
        if event in pairs.paired:
            return None
        pairs.paired.add(event)
        pairs.staged.append(staged)
        pairs.serving.append(serving)
        needed = int(self.lookup(*key).metrics[STAGING_METRIC])
        if len(pairs.staged) < needed:
            return None
        self.judged.add(key)
        self.pairs.pop(key)
        verdict = gate(np.array(pairs.staged), np.array(pairs.serving), self.settings)
        return StagingVerdict(key[0], key[1], verdict.passed, f"live, on the same events: {verdict.figures}")


def _remember(seen: OrderedDict[str, bool], event: str, correct: bool, memory: int) -> None:
    seen[event] = correct
    while len(seen) > memory:
        seen.popitem(last=False)
