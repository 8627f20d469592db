"""``loopline demo``: the closed loop on a synthetic drifting stream."""

from streams.demo.report import Report
from streams.demo.run import run_demo

__all__ = ["Report", "run_demo"]
