"""``loopline demo``: the closed loop on a synthetic drifting stream."""

from loopline.demo.report import Report
from loopline.demo.run import run_demo

__all__ = ["Report", "run_demo"]
