"""Settings, one class per concern, read from ``LOOPLINE_*`` environment variables.

Each class is passed into the constructors that need it; nothing reads settings from globals.
"""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "BrokerSettings",
    "ClickHouseSettings",
    "DemoSettings",
    "DriftSettings",
    "InferenceSettings",
    "JoinSettings",
    "KafkaSettings",
    "MetricsSettings",
    "RegistrySettings",
    "SinkSettings",
    "StateSettings",
    "TrainerSettings",
    "all_settings_classes",
    "settings_table",
]

DEFAULT_DATA_DIR = Path(".loopline")


class KafkaSettings(BaseSettings):
    """How every loopline client reaches Kafka, and what a worker's commits guarantee."""

    model_config = SettingsConfigDict(env_prefix="LOOPLINE_KAFKA_", extra="ignore", use_attribute_docstrings=True)

    bootstrap_servers: str = "127.0.0.1:9092"
    """Comma-separated host:port list of brokers. When unset: the local broker that ``loopline kafka start``
    recorded in ``LOOPLINE_BROKER_DATA_DIR`` (its ``broker.json``), if there is one."""
    connect_timeout_s: float = Field(default=5.0, gt=0)
    """How long a command or a starting worker waits for the brokers to answer before it stops with
    exit code 2 ("cannot reach Kafka at ...")."""
    topic_prefix: str = "loopline."
    """Prefix of every topic name, so that tenants and tests never collide."""
    partitions: int = Field(default=4, ge=1)
    """Partitions of the data topics (features, predictions, labels, outcomes)."""
    replication_factor: int = Field(default=1, ge=1)
    """Replication factor of every topic loopline creates."""
    retention_ms: int = 7 * 24 * 3600 * 1000
    """Retention of the non-compacted topics."""
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024 * 1024)
    """Largest record on every topic (the topics' max.message.bytes; inline artifacts on model-versions); an
    output that would be larger is dead-lettered as too-large."""
    client_id: str = "loopline"
    """Client id reported to the brokers."""
    guarantee: Literal["exactly-once", "at-least-once"] = "exactly-once"
    """exactly-once: a batch's outputs and its input offsets are committed in one Kafka
    transaction, and every loopline consumer reads committed records only. at-least-once, for
    brokers without transactions: offsets are committed once the outputs are acknowledged, and a
    crash or rebalance may repeat a batch's outputs."""
    commit_interval_ms: int = Field(default=100, ge=0)
    """While a worker works through a backlog (a full batch taken, another full one waiting), one
    commit takes the batches of up to this long; once less waits (the worker has caught up), the
    batch is committed at once. 0: every batch is committed on its own (always so for the trainer's
    requests, whose trainings may outlast a transaction). Shorter than transaction_timeout_ms."""
    worker_id: str | None = None
    """A stable name of this worker process (e.g. its pod name): its transactional id, so that a
    restarted worker aborts at once what its predecessor left open. By default a random one, whose
    open transaction the broker aborts after ``transaction_timeout_ms``."""
    transaction_timeout_ms: int = Field(default=10_000, ge=1000)
    """How long the broker lets a transaction of a vanished worker stay open before aborting it;
    committed readers of its output partitions wait for it that long."""
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    """How long the group waits for a silent worker before giving its partitions to the others."""
    max_poll_interval_ms: int = Field(default=300_000, ge=1000)
    """Longest time a worker may spend on one batch (a training, a store outage) before the group
    takes its partitions away."""
    max_crashes: int = Field(default=3, ge=0)
    """Worker lives in a row that may end (a crash, a kill) on the same records of a partition before the next
    worker takes them one at a time and dead-letters the one it dies on (poison-pill); 0 turns this off."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """Kafka security protocol."""
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    """SASL mechanism, when the protocol is SASL_*."""
    sasl_username: str | None = None
    """SASL user name."""
    sasl_password: SecretStr | None = None
    """SASL password."""
    ssl_cafile: Path | None = None
    """CA bundle that signs the brokers' certificates."""
    ssl_certfile: Path | None = None
    """Client certificate, for mutual TLS."""
    ssl_keyfile: Path | None = None
    """Client private key, for mutual TLS."""
    ssl_key_password: SecretStr | None = None
    """Password of the client private key."""

    def topic(self, name: str) -> str:
        """Full name of a catalogue topic, e.g. ``features`` → ``loopline.features``."""
        return f"{self.topic_prefix}{name}"

    @model_validator(mode="before")
    @classmethod
    def _local_broker(cls, data: Any) -> Any:
        """Without a bootstrap address, take the local broker's recorded one.

        ``loopline kafka start --port 0`` picks a free port; reading it back here means the other
        commands reach that broker without an export, instead of whatever else listens on 9092.
        An address that is set (environment or argument) is always used as given.
        """
        if not isinstance(data, dict) or "bootstrap_servers" in data:
            return data
        from loopline.kafka.broker import Broker

        broker = Broker(BrokerSettings())
        try:
            recorded = broker.bootstrap_servers
        except (ValueError, KeyError, OSError) as exc:
            raise ValueError(f"the local broker's state file {broker.state_file} is unreadable ({exc!r})") from None
        return data if recorded is None else data | {"bootstrap_servers": recorded}


class BrokerSettings(BaseSettings):
    """The local single-node Kafka broker that tests and the demo start (not for production)."""

    model_config = SettingsConfigDict(env_prefix="LOOPLINE_BROKER_", extra="ignore", use_attribute_docstrings=True)

    data_dir: Path = DEFAULT_DATA_DIR / "kafka"
    """Where the broker keeps its log segments, config, pid file and log."""
    port: int = Field(default=9092, ge=0, le=65535)
    """Port of the broker listener on 127.0.0.1; 0 picks a free one."""
    heap: str = "512m"
    """Maximum JVM heap of the broker."""
    start_timeout_s: float = 90.0
    """How long to wait for the broker to answer a metadata request after start."""


class ClickHouseSettings(BaseSettings):
    """Where the analytics tables live."""

    model_config = SettingsConfigDict(
        env_prefix="LOOPLINE_CLICKHOUSE_", extra="ignore", use_attribute_docstrings=True, hide_input_in_errors=True
    )

    dsn: SecretStr = SecretStr(f"chdb://{DEFAULT_DATA_DIR / 'clickhouse'}")
    """``chdb://<dir>`` (``chdb:///<absolute dir>``) for the embedded engine, or
    ``http(s)://user:password@host:8123/db`` for a server."""
    password: SecretStr | None = None
    """Server password, when it is not in the DSN."""
    database: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Database of the loopline tables, created if missing; by default the DSN's own."""

    @field_validator("dsn")
    @classmethod
    def _known_scheme(cls, dsn: SecretStr) -> SecretStr:
        """Refuse a DSN no client can open here, so that a worker stops at start instead of retrying forever."""
        parts = urlsplit(dsn.get_secret_value())
        if parts.scheme not in ("chdb", "http", "https"):
            raise ValueError(
                f"unknown ClickHouse DSN scheme {parts.scheme!r}: use chdb://<dir> (embedded) or "
                "http(s)://user:password@host:8123/db (server)"
            )
        if parts.scheme != "chdb" and (not parts.hostname or parts.port == 0):  # .port raises on a bad number
            raise ValueError("a server DSN needs a host and a port: http(s)://user:password@host:8123/db")
        return dsn


class RegistrySettings(BaseSettings):
    """Where model artifacts live."""

    model_config = SettingsConfigDict(env_prefix="LOOPLINE_REGISTRY_", extra="ignore", use_attribute_docstrings=True)

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
    """The inference agent."""

    model_config = SettingsConfigDict(env_prefix="LOOPLINE_INFERENCE_", extra="ignore", use_attribute_docstrings=True)

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


class DriftSettings(BaseSettings):
    """The drift agent."""

    model_config = SettingsConfigDict(env_prefix="LOOPLINE_DRIFT_", extra="ignore", use_attribute_docstrings=True)

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

    @field_validator("concept_params", "covariate_params", "prediction_params")
    @classmethod
    def _detector_builds(cls, params: dict[str, int | float], info: ValidationInfo) -> dict[str, int | float]:
        """Build each detector once with its parameters, so that a bad one is refused by name, at start."""
        from loopline.drift.detectors import make_detector

        kind = str(info.field_name).removesuffix("_params")
        detector = info.data.get(f"{kind}_detector")  # absent when the name itself was refused
        if detector is not None:
            make_detector(detector, params, binary_input=kind == "concept")
        return params


class JoinSettings(BaseSettings):
    """The join agent."""

    model_config = SettingsConfigDict(env_prefix="LOOPLINE_JOIN_", extra="ignore", use_attribute_docstrings=True)

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


class StateSettings(BaseSettings):
    """The state stores of the join, the drift monitors and the rollback guard."""

    model_config = SettingsConfigDict(env_prefix="LOOPLINE_STATE_", extra="ignore", use_attribute_docstrings=True)

    backend: Literal["disk", "memory"] = "disk"
    """disk: one RocksDB store per input partition under ``dir``, kept across restarts of a worker with a
    ``LOOPLINE_KAFKA_WORKER_ID``; memory: the state is held in memory and read again from its changelog topic
    at every start and rebalance."""
    dir: Path = DEFAULT_DATA_DIR / "state"
    """Where the disk stores live: ``<dir>/<agent group>/<worker id>/<partition>``."""
    checkpoint_interval_ms: float = Field(default=10_000.0, ge=0)
    """Time between two checkpoints of a running worker's disk stores: a worker killed and started again with the
    same ``LOOPLINE_KAFKA_WORKER_ID`` reads back about what it committed in this time; each costs a broker round
    trip and a WAL sync per partition written."""


class SinkSettings(BaseSettings):
    """The ClickHouse sink agent and its query endpoint."""

    model_config = SettingsConfigDict(env_prefix="LOOPLINE_SINK_", extra="ignore", use_attribute_docstrings=True)

    max_batch_rows: int = Field(default=10_000, ge=1)
    """Most records written to ClickHouse in one insert round."""
    max_wait_ms: float = Field(default=1000.0, ge=0)
    """Longest wait for a batch to fill after its first record."""
    max_backoff_s: float = Field(default=30.0, gt=0)
    """Longest pause between two tries while ClickHouse is unavailable (input is held meanwhile)."""
    query_host: str = "127.0.0.1"
    """Interface of the sink's query endpoint, which answers ``loopline query`` while the sink owns an embedded store."""
    query_port: int = Field(default=9310, ge=0, le=65535)
    """Port of the query endpoint; 0 turns it off."""
    query_token: SecretStr | None = None
    """Bearer token the query endpoint requires, for an endpoint reached from other hosts; unset: the
    sink makes a new one at each start and writes it to the token file."""
    query_token_file: Path | None = None
    """File the sink writes its endpoint's token to (readable by its user only) and ``loopline query``
    reads it from; unset: ``.loopline/sink-query-<port>.token``."""
    query_timeout_s: float = Field(default=30.0, gt=0)
    """Longest run of an analytics query (ClickHouse ``max_execution_time``), in the endpoint and in
    ``loopline query``; a longer one is stopped and refused."""
    query_max_memory_bytes: int = Field(default=1 << 30, ge=1)
    """Most memory an analytics query may use (ClickHouse ``max_memory_usage``)."""
    query_max_result_rows: int = Field(default=1_000_000, ge=1)
    """Most rows an analytics query may return (ClickHouse ``max_result_rows``); a larger result is refused."""

    @property
    def query_url(self) -> str:
        """Where ``loopline query`` finds the endpoint."""
        host = "127.0.0.1" if self.query_host in ("0.0.0.0", "") else self.query_host
        return f"http://{host}:{self.query_port}/query"

    @property
    def token_file(self) -> Path:
        """Where the endpoint's token is written and read."""
        return self.query_token_file or DEFAULT_DATA_DIR / f"sink-query-{self.query_port}.token"


MODEL_FAMILIES = ("mlp", "trees")
"""The built-in families of :mod:`loopline.models.families`, named here so that settings load without torch."""
TRAINER_ENTRY_POINTS = "loopline.trainers"
"""The entry-point group of families that installed packages provide (:mod:`loopline.models.plugins`)."""


class TrainerSettings(BaseSettings):
    """The trainer agent."""

    model_config = SettingsConfigDict(env_prefix="LOOPLINE_TRAINER_", extra="ignore", use_attribute_docstrings=True)

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
    def _known_families(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        known = [*MODEL_FAMILIES, *sorted(point.name for point in entry_points(group=TRAINER_ENTRY_POINTS))]
        unknown = sorted(set(names) - set(known))
        if not names or unknown:
            named = f", not {', '.join(unknown)}" if unknown else ""
            raise ValueError(f"families must name some of {', '.join(known)}{named}")
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
        """:attr:`canary_steps` as a list (empty: no canary)."""
        return [float(step) for step in self.canary_steps.split(",") if step]

    @property
    def family_names(self) -> list[str]:
        """:attr:`families` as a list, in the order given."""
        return self.families.split(",")


class DemoSettings(BaseSettings):
    """``loopline demo``: the synthetic drifting stream and where its report goes."""

    model_config = SettingsConfigDict(env_prefix="LOOPLINE_DEMO_", extra="ignore", use_attribute_docstrings=True)

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
    report_dir: Path = Path(".loopline/reports")
    """Where each run writes its report folder (plot and summary)."""


class MetricsSettings(BaseSettings):
    """Prometheus exposition of each worker."""

    model_config = SettingsConfigDict(env_prefix="LOOPLINE_METRICS_", extra="ignore", use_attribute_docstrings=True)

    port: int = Field(default=9300, ge=0, le=65535)
    """Port of the /metrics HTTP endpoint; 0 disables it."""
    host: str = "127.0.0.1"
    """Interface the /metrics endpoint listens on (``0.0.0.0``: every interface, for a Prometheus on another host)."""


def settings_table() -> str:
    """A markdown table of every ``LOOPLINE_*`` variable, its default and meaning."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for cls in all_settings_classes():
        prefix = cls.model_config.get("env_prefix", "")
        for name, field in cls.model_fields.items():
            default = field.get_default(call_default_factory=True)
            if isinstance(default, SecretStr):
                default = default.get_secret_value()
            if isinstance(default, dict):
                default = json.dumps(default)
            shown = "" if default is None else f"`{default}`"
            description = " ".join((field.description or "").split())
            variable = f"{prefix}{name}".upper()
            lines.append(f"| `{variable}` | {shown} | {description} |")
    return "\n".join(lines)


def all_settings_classes() -> list[type[BaseSettings]]:
    """Every settings class, for documentation and configuration checks."""
    return [
        KafkaSettings,
        BrokerSettings,
        ClickHouseSettings,
        RegistrySettings,
        InferenceSettings,
        JoinSettings,
        DriftSettings,
        StateSettings,
        SinkSettings,
        TrainerSettings,
        DemoSettings,
        MetricsSettings,
    ]
