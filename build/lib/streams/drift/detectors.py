"""River drift detectors, chosen by name in the settings and used through River's own API.

Every detector is fed with ``update(x)`` and read with ``drift_detected``; nothing wraps them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from river import base, drift
from river.drift import binary

__all__ = ["DETECTORS", "make_detector"]

DETECTORS: dict[str, Any] = {
    "ADWIN": drift.ADWIN,
    "PageHinkley": drift.PageHinkley,
    "KSWIN": drift.KSWIN,
    "DDM": binary.DDM,
    "EDDM": binary.EDDM,
    "HDDMA": binary.HDDMA,
    "HDDMW": binary.HDDMW,
}
"""Detectors by name. DDM, EDDM, HDDMA and HDDMW take 0/1 inputs (1: an error): the concept detector only."""

BINARY = {"DDM", "EDDM", "HDDMA", "HDDMW"}


def make_detector(name: str, params: Mapping[str, float], binary_input: bool = False) -> base.DriftDetector:
    """A fresh detector ``name`` built with ``params``.

    Raises:
        ValueError: an unknown name, a 0/1 detector for real-valued input, or parameters the detector
            does not take.
    """
    if name not in DETECTORS:
        raise ValueError(f"unknown drift detector {name!r}; choose one of {', '.join(DETECTORS)}")
    if name in BINARY and not binary_input:
        raise ValueError(f"{name} takes 0/1 inputs: use it for concept drift only")
    if name == "KSWIN":
        params = {"seed": 0, **params}  # KSWIN samples at random: seeded, detection is reproducible
    try:
        return DETECTORS[name](**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for {name}: {exc}") from None
