"""The canary ramp: a challenger serves a rising share of the entities while the labels say it is not worse (no Kafka).

With ``LOOPLINE_TRAINER_CANARY_STEPS`` set (say ``0.05,0.25,0.5``), a candidate that passed the gate
(and staging, when set) becomes a canary at the first share; the inference workers give it the
entities of that share (:mod:`loopline.inference.split`) and the serving version the rest, and the
join gives both arms their labeled outcomes. :class:`Ramp` counts each arm's outcomes in the current
step and, once both have ``canary_outcomes``, judges the step: the canary passes unless its accuracy
is below the serving version's by more than ``canary_margin`` plus ``gate_standard_errors``
standard errors of the difference (two independent arms: the entities differ). A passed step moves
the canary to the next share, the last one to serving; a failed step rejects it, with the figures.

The counts live in memory, per step: the registry snapshot a batch is counted under says which
step runs (a step changed by hand, a rollback of the serving version or a new canary starts the
counts again), an outcome read twice (a batch read again after an aborted commit) counts once, and
a worker that restarts counts the step again from its committed offsets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from loopline.models import ModelVersion
from loopline.models.registry import Registry, RegistryView
from loopline.settings import TrainerSettings

__all__ = ["Ramp", "RampVerdict", "go_live"]


@dataclass(frozen=True)
class RampVerdict:
    """The verdict on one step of a canary: ``next_traffic`` is its next share, None to serve all (or abort)."""

    model_name: str
    version: int
    traffic: float
    passed: bool
    next_traffic: float | None
    figures: str


@dataclass
class _Step:
    key: tuple[int, float, int]
    """(canary version, its share, serving version): the step being counted."""
    canary: list[bool] = field(default_factory=list)
    serving: list[bool] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    """Event ids counted: an outcome read again (a batch read twice after an aborted commit) counts once."""
    judged: bool = False


def go_live(
    registry: RegistryView, model_name: str, version: int, reason: str, steps: list[float]
) -> list[ModelVersion]:
    """The records that put a version that passed its checks live: a canary at the first of ``steps``, or
    serving when there are none."""
    if steps:
        return registry.start_canary(model_name, version, steps[0], f"canary at {steps[0]:.0%}: {reason}")
    return registry.promote(model_name, version, reason)


class Ramp:
    """Judges each step of each model's canary once, on the outcomes of the two arms."""

    def __init__(self, settings: TrainerSettings) -> None:
        self.settings = settings
        self.steps: dict[str, _Step] = {}
        self.read: tuple[RegistryView, int, dict[str, tuple[int, float, int] | None]] = (Registry(), 0, {})
        """The registry last counted under, its revision, and the step it names per model (each looked up
        once per revision, not per outcome)."""

    def add(self, outcome: dict[str, Any], registry: RegistryView) -> RampVerdict | None:
        """Count one labeled outcome under the step ``registry`` names; a verdict when it completes the step."""
        if outcome["shadow"] or not self.settings.canary_shares:
            return None
        model = outcome["model_name"]
        key = self._step_of(registry, model)
        if key is None:
            return None
        step = self.steps.get(model)
        if step is None or step.key != key:
            step = self.steps[model] = _Step(key)
        if step.judged:
            return None
        arm = {key[0]: step.canary, key[2]: step.serving}.get(outcome["model_version"])
        if arm is None or outcome["event_id"] in step.seen:
            return None
        step.seen.add(outcome["event_id"])
        arm.append(bool(outcome["correct"]))
        needed = self.settings.canary_outcomes
        if len(step.canary) < needed or len(step.serving) < needed:
            return None
        step.judged = True
        return self._judge(model, step)

    def _step_of(self, registry: RegistryView, model: str) -> tuple[int, float, int] | None:
        """(canary version, its share, serving version) of ``model`` in ``registry``; None without a canary."""
        if self.read[0] is not registry or self.read[1] != registry.revision:
            self.read = (registry, registry.revision, {})
        steps = self.read[2]
        if model not in steps:
            canary, serving = registry.canary(model), registry.serving(model)
            steps[model] = None if canary is None or serving is None else (canary.version, canary.traffic,
                                                                            serving.version)  # fmt: skip
        return steps[model]

    def _judge(self, model: str, step: _Step) -> RampVerdict:
        s = self.settings
        version, traffic, serving = step.key
        n_c, n_s = len(step.canary), len(step.serving)
        ours, theirs = sum(step.canary) / n_c, sum(step.serving) / n_s
        se = math.sqrt(ours * (1 - ours) / n_c + theirs * (1 - theirs) / n_s)
        allowed = -(s.canary_margin + s.gate_standard_errors * se)
        passed = ours - theirs >= allowed
        later = [share for share in s.canary_shares if share > traffic]
        figures = (f"canary at {traffic:.0%}: online accuracy {ours:.4f} on {n_c} outcomes against version "
                   f"{serving}'s {theirs:.4f} on {n_s}: {ours - theirs:+.4f}, {'within' if passed else 'below'} "
                   f"the {allowed:+.4f} allowed (-{s.canary_margin:g} - {s.gate_standard_errors:g} standard errors "
                   f"of {se:.4f})")  # fmt: skip
        return RampVerdict(model, version, traffic, passed, later[0] if passed and later else None, figures)
