"""How loopline reaches Kafka, and the local broker that tests and the demo start."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from loopline.settings.base import DEFAULT_DATA_DIR, env_prefix

__all__ = ["BrokerSettings", "KafkaSettings"]


class KafkaSettings(BaseSettings):
    """How every loopline client reaches Kafka, and what a worker's commits guarantee.

    Without an address (``LOOPLINE_KAFKA_BOOTSTRAP_SERVERS`` unset and none passed) the brokers are
    127.0.0.1:9092: Kafka's own default listener, and the port of ``loopline kafka start`` unless it
    is told another. The settings read nothing but their variables, so a library builds them without
    touching a file; the ``loopline`` commands, which run on the host of a local broker, take the
    address that broker recorded when this variable is unset
    (``loopline.kafka.broker.local_kafka_settings``).
    """

    model_config = env_prefix("LOOPLINE_KAFKA_")

    bootstrap_servers: str = "127.0.0.1:9092"
    """Comma-separated host:port list of brokers. When unset, the ``loopline`` commands take the local broker
    that ``loopline kafka start`` recorded in ``LOOPLINE_BROKER_DATA_DIR`` (its ``broker.json``), if there is one."""
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


class BrokerSettings(BaseSettings):
    """The local single-node Kafka broker that tests and the demo start (not for production)."""

    model_config = env_prefix("LOOPLINE_BROKER_")

    data_dir: Path = DEFAULT_DATA_DIR / "kafka"
    """Where the broker keeps its log segments, config, pid file and log."""
    port: int = Field(default=9092, ge=0, le=65535)
    """Port of the broker listener on 127.0.0.1; 0 picks a free one."""
    heap: str = "512m"
    """Maximum JVM heap of the broker."""
    start_timeout_s: float = 90.0
    """How long to wait for the broker to answer a metadata request after start."""
