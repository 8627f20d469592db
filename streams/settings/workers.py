"""The join and drift agents, and the metrics endpoint of every worker."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings

from loopline.settings.base import env_prefix

__all__ = ["DriftSettings", "JoinSettings", "MetricsSettings"]


class JoinSettings(BaseSettings):
    """The join agent."""

    model_config = env_prefix("LOOPLINE_JOIN_")

    max_label_delay_hours: float = Field(default=24.0, gt=0)
    """How long a prediction waits for its label (and a label for its prediction), in record time."""
    max_pending: int = Field(default=500_000, ge=1)
    """Most event_ids a worker holds waiting (about 1 KB each on disk with 32 features); beyond it the oldest are
    dropped and counted as evicted."""
    quality_window: int = Field(default=1000, ge=1)
    """Predictions per model version in the label-rate window."""
    max_batch_size: int = Field(default=2048, ge=1)
    """Most records the join takes at once."""
    max_wait_ms: float = Field(default=20.0, ge=0)
    """Longest wait for a batch to fill after its first record."""
    max_clock_skew_ms: int = Field(default=300_000, ge=0)
    """How far ahead of this worker's clock a record's Kafka timestamp may be; a later one is dead-lettered
    (future-timestamp) and does not move the join's record-time clock."""


class DriftSettings(BaseSettings):
    """The drift agent.

    The detectors' parameters are checked by building each detector once where the drift worker
    starts (``loopline worker drift``), so that the settings load without River.
    """

    model_config = env_prefix("LOOPLINE_DRIFT_")

    min_samples: int = Field(default=500, ge=1)
    """Samples of a model version that set its reference (error rate, feature and score means); no drift is raised before."""
    cooldown_samples: int = Field(default=2000, ge=0)
    """Outcomes of a model after a retrain request during which no new request is raised."""
    follow_up_samples: int = Field(default=1000, ge=0)
    """Outcomes after a drift's retrain request when the agent asks again, for a training on all the
    data since the detection; each next follow-up comes twice as many outcomes later. 0: none."""
    follow_up_max_samples: int = Field(default=16000, ge=1)
    """Most outcomes between two follow-ups; at this spacing a follow-up is asked only while the
    model's error is above its level before the drift, and the checks go on without end."""
    recent_samples: int = Field(default=200, ge=1)
    """Samples in the recent means that a drift's evidence reports (and that say whether the error went up)."""
    block_size: int = Field(default=32, ge=1)
    """Feature and score detectors see the mean of each block of this many samples, one update per block."""
    concept_detector: Literal["ADWIN", "PageHinkley", "KSWIN", "DDM", "EDDM", "HDDMA", "HDDMW"] = "ADWIN"
    """River detector on the per-outcome error (0 or 1): ADWIN, PageHinkley, KSWIN, DDM, EDDM, HDDMA, HDDMW."""
    concept_params: dict[str, int | float] = {"delta": 0.002}
    """Parameters of the concept detector, as JSON."""
    covariate_detector: Literal["ADWIN", "PageHinkley", "KSWIN"] = "ADWIN"
    """River detector on each feature's block means, standardised by the reference."""
    covariate_params: dict[str, int | float] = {"delta": 1e-4, "clock": 1}
    """Parameters of the covariate detectors, as JSON."""
    prediction_detector: Literal["ADWIN", "PageHinkley", "KSWIN"] = "ADWIN"
    """River detector on each class score's block means, standardised by the reference."""
    prediction_params: dict[str, int | float] = {"delta": 1e-4, "clock": 1}
    """Parameters of the prediction detectors, as JSON."""
    quality_window: int = Field(default=1000, ge=1)
    """Outcomes per model version in the online accuracy and log-loss windows."""
    max_batch_size: int = Field(default=4096, ge=1)
    """Most records the drift agent takes at once."""
    max_wait_ms: float = Field(default=50.0, ge=0)
    """Longest wait for a batch to fill after its first record."""


class MetricsSettings(BaseSettings):
    """Prometheus exposition of each worker."""

    model_config = env_prefix("LOOPLINE_METRICS_")

    port: int = Field(default=9300, ge=0, le=65535)
    """Port of the /metrics HTTP endpoint; 0 disables it."""
    host: str = "127.0.0.1"
    """Interface the /metrics endpoint listens on (``0.0.0.0``: every interface, for a Prometheus on another host)."""
