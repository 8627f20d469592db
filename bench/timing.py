"""Timing shared by the benchmark scripts."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_rate(func: Callable[[], object], items: int, seconds: float) -> float:
    """Best items/s of three runs of ``func`` (each handling ``items``) lasting at least ``seconds``."""
    best = 0.0
    for _ in range(3):
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            func()
            calls += 1
        best = max(best, calls * items / elapsed)
    return best
