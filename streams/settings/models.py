"""Where model artifacts live, how the inference agent serves them and how the trainer makes new ones."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from loopline.settings.base import DEFAULT_DATA_DIR, env_prefix

__all__ = ["InferenceSettings", "RegistrySettings", "TrainerSettings"]


class RegistrySettings(BaseSettings):
    """Where model artifacts live."""

    model_config = env_prefix("LOOPLINE_REGISTRY_")

    artifact_dir: Path = DEFAULT_DATA_DIR / "artifacts"
    """Directory of artifacts too large to travel inline (shared by every worker in production)."""
    inline_limit_bytes: int = Field(default=4 * 1024 * 1024, ge=0)
    """Largest artifact carried inline in its model-versions record."""
    max_artifact_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    """Largest artifact registered or loaded; a file is read with this bound, and only from the artifact directory."""
    regression_dir: Path | None = None
    """Directory of regression sets, ``<model>.csv`` (features by name, ``label``, optional ``slice``): every
    promotion, automatic or by hand, must pass the model's set."""
    regression_rule: Literal["no-loss", "slices"] = "no-loss"
    """no-loss: no case the serving version gets right may be lost; slices: every slice must reach
    ``regression_min_accuracy``."""
    regression_min_accuracy: float = Field(default=0.0, ge=0, le=1)
    """Accuracy every slice of a regression set must reach under the slices rule."""


class InferenceSettings(BaseSettings):
    """The inference agent, and the checks every version passes before it serves."""

    model_config = env_prefix("LOOPLINE_INFERENCE_")

    model_name: str = "default"
    """Name of the model this worker serves."""
    max_batch_size: int = Field(default=1024, ge=1)
    """Largest micro-batch handed to the model."""
    max_wait_ms: float = Field(default=5.0, ge=0)
    """Longest time the first event of a batch waits for the batch to fill."""
    backend: Literal["auto", "onnxruntime", "torch"] = "auto"
    """Runtime backend; auto picks the one that reads the artifact (ONNX: onnxruntime, state dict: torch)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Device; auto uses a GPU when one is present."""
    probe_rows: int = Field(default=64, ge=1)
    """Rows of the probe batch a new version must pass before it is swapped in."""


class TrainerSettings(BaseSettings):
    """The trainer agent.

    Whether each of ``families`` is installed is checked where the trainer worker starts
    (``loopline worker trainer``): the plug-in families are entry points of installed packages, read
    from their metadata, which the settings do not read.
    """

    model_config = env_prefix("LOOPLINE_TRAINER_")

    window_events: int = Field(default=20000, ge=1)
    """Most recent outcomes of the model read for a training run."""
    window_minutes: float | None = Field(default=None, gt=0)
    """If set, only outcomes written in the last this many minutes are read."""
    min_events: int = Field(default=300, ge=2)
    """Fewest labeled outcomes a training run needs; a request with fewer is answered with that reason."""
    wait_minutes: float = Field(default=2.0, ge=0)
    """After a drift, how long a training waits for ``min_events`` outcomes after the detection; then
    it is answered with what came (the drift worker's follow-ups ask again). Shorter than
    ``LOOPLINE_KAFKA_MAX_POLL_INTERVAL_MS``."""
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    """Most recent share of the window held out for the gate."""
    min_improvement: float = 0.0
    """Held-out accuracy by which a candidate must beat the serving version on top of the noise
    margin; negative: how much worse it may be."""
    gate_standard_errors: float = Field(default=2.0, ge=0)
    """The noise margin: standard errors of the held-out accuracy difference (paired, per outcome) by
    which a candidate must beat the serving version."""
    min_accuracy: float = Field(default=0.0, ge=0, le=1)
    """Held-out accuracy a candidate must reach to serve, whatever the serving version's."""
    seed: int = 0
    """Seed of every random choice in training."""
    families: str = "mlp,trees"
    """Model families a retrain chooses from (comma-separated: mlp, trees, or a family an installed
    package provides as a ``loopline.trainers`` entry point): each is trained on the older part of
    the training rows and the best on the newest part is trained on them all."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Training device of the MLP; auto uses a GPU when torch sees one (trees train on the CPU)."""
    threads: int = Field(default=1, ge=1)
    """CPU threads training uses; one is the fastest for the tabular MLP and leaves the other
    cores to the other workers."""
    staging_outcomes: int = Field(default=0, ge=0)
    """0: a candidate that passes the gate serves at once. N: it runs in shadow first and serves only when
    it beats the serving version on N labeled outcomes of the same events (the gate's test); otherwise
    it is rejected."""
    canary_steps: str = ""
    """Empty: a candidate that passes the gate (and staging, if set) serves at once. Rising shares of the
    entities below 1 (e.g. 0.05,0.25,0.5): it serves each in turn as a canary, each until both arms have
    ``LOOPLINE_TRAINER_CANARY_OUTCOMES`` outcomes in the step, then serves all; it is rejected at the
    step where its online accuracy is below the serving version's by more than
    ``LOOPLINE_TRAINER_CANARY_MARGIN`` plus the noise. A canary started by hand is ramped the same way."""
    canary_outcomes: int = Field(default=300, ge=2)
    """Labeled outcomes each arm (canary and serving version) needs in a step before it is judged."""
    canary_margin: float = Field(default=0.02, ge=0)
    """Online accuracy by which a canary may be worse than the serving version, on top of the noise."""
    guard_outcomes: int = Field(default=500, ge=1)
    """Outcomes of a newly serving version, and of its predecessor before it, that the rollback guard compares."""
    guard_margin: float = Field(default=0.05, ge=0)
    """Accuracy drop against the predecessor that rolls a newly serving version back."""

    @field_validator("families")
    @classmethod
    def _named_once_each(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        if not names:
            raise ValueError("families must name one model family at least (mlp, trees or an installed one)")
        return ",".join(dict.fromkeys(names))

    @field_validator("canary_steps")
    @classmethod
    def _rising_shares(cls, value: str) -> str:
        try:
            steps = [float(step) for step in value.split(",") if step.strip()]
        except ValueError:
            raise ValueError(f"canary steps must be numbers, not {value!r}") from None
        if any(not 0 < step < 1 for step in steps) or steps != sorted(set(steps)):
            raise ValueError(f"canary steps must rise between 0 and 1 (exclusive), not {value!r}")
        return ",".join(str(step) for step in steps)

    @property
    def canary_shares(self) -> list[float]:
        """``canary_steps`` as a list (empty: no canary)."""
        return [float(step) for step in self.canary_steps.split(",") if step]

    @property
    def family_names(self) -> list[str]:
        """``families`` as a list, in the order given."""
        return self.families.split(",")
