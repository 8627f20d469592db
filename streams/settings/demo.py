"""``loopline demo``: its synthetic stream and where its report goes."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings

from loopline.settings.base import DEFAULT_DATA_DIR, env_prefix

__all__ = ["DemoSettings"]


class DemoSettings(BaseSettings):
    """``loopline demo``: the synthetic drifting stream and where its report goes."""

    model_config = env_prefix("LOOPLINE_DEMO_")

    events: int = Field(default=13_000, ge=100)
    """Feature events in the stream."""
    rate: float = Field(default=400.0, gt=0)
    """Feature events sent per second."""
    concept_drift_at: int = Field(default=4000, ge=0)
    """Event from which the labels follow a new concept."""
    covariate_drift_at: int = Field(default=9000, ge=0)
    """Event from which feature x3 is shifted."""
    covariate_shift: float = 2.0
    """How far x3 moves, in standard deviations."""
    label_delay: int = Field(default=100, ge=0)
    """Events between a feature event and its label."""
    seed: int = 0
    """Seed of the stream."""
    report_dir: Path = DEFAULT_DATA_DIR / "reports"
    """Where each run writes its report folder (plot and summary)."""
