"""A model's way back from a drift: when the drift agent asks for a retrain again (no Kafka).

One training right after a detection learns from the few outcomes of the new world that exist by
then, and its candidate may be rejected or serve while still below what more data would give.
So a drift that made a retrain request opens a :class:`Recovery`, and the agent checks the model
again after ``follow_up_samples`` more outcomes, then after twice as many, and so on up to every
``follow_up_max_samples`` outcomes, without end. While the spacing still grows, each check asks
again (a follow-up request, for a training on every outcome since the detection): a candidate
trained on more of the new world can replace the first one, or serve where the first was
rejected; the trainer's gate decides. Once the spacing is at its most, a check asks only when the
serving version's error over its quality window is above the model's error before the drift by
more than two standard errors of the difference (both are estimates: the one before the drift
from the monitor's warm-up): the loop keeps trying while the error stays high, and a model back
at its old level asks nothing more.

A new requested detection replaces the recovery (its data starts after the newest detection); the
error level before the drift is the lowest one any of them saw.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Recovery", "check", "error_is_high", "opened"]


@dataclass(frozen=True)
class Recovery:
    """A model's recovery from its last requested drift, as counted in one outcomes partition."""

    detected_at: int
    """The model's outcomes seen in the partition when the drift was detected."""
    since: list[dict[str, Any]]
    """Where the data of the new world starts: ``PartitionOffset`` records of a retrain request."""
    baseline: float | None
    """The serving version's error rate before the drift (None: its reference was not set yet)."""
    checks: int
    """Checks made so far."""
    next_at: int
    """The outcome count at which the next check is due."""

    def state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, state: dict[str, Any]) -> Recovery:
        return cls(**state)


def opened(
    position: int, since: list[dict[str, Any]], baseline: float | None, before: Recovery | None, first_gap: int
) -> Recovery:
    """The recovery of a drift requested at outcome ``position`` (``before``: the one it replaces)."""
    if before is not None and before.baseline is not None:
        baseline = before.baseline if baseline is None else min(baseline, before.baseline)
    return Recovery(position, since, baseline, 0, position + first_gap)


def error_is_high(error: float, outcomes: int, baseline: float | None, baseline_outcomes: int) -> bool:
    """Whether an error rate over ``outcomes`` is above ``baseline``, itself measured over
    ``baseline_outcomes``, by more than two standard errors of the difference."""
    if baseline is None or outcomes == 0:
        return False
    variance = max(baseline * (1 - baseline), 1e-6)
    return error - baseline > 2 * (variance / outcomes + variance / baseline_outcomes) ** 0.5


def check(
    recovery: Recovery,
    position: int,
    error: float,
    outcomes: int,
    baseline_outcomes: int,
    first_gap: int,
    max_gap: int,
) -> tuple[Recovery, bool]:
    """The recovery after the outcome count reached ``position``, and whether to ask for a retrain now.

    ``error`` is the serving version's error rate over its last ``outcomes`` outcomes (the baseline's
    over ``baseline_outcomes``). Before the check is due nothing changes. A due check schedules the
    next one ``first_gap * 2**checks`` outcomes later (at most ``max_gap``); it asks while that spacing
    is below ``max_gap``, and after that when :func:`error_is_high`.
    """
    if position < recovery.next_at:
        return recovery, False
    gap = first_gap * 2 ** (recovery.checks + 1)
    after = Recovery(recovery.detected_at, recovery.since, recovery.baseline, recovery.checks + 1,
                     position + min(gap, max_gap))  # fmt: skip
    return after, gap // 2 < max_gap or error_is_high(error, outcomes, recovery.baseline, baseline_outcomes)
