"""Where the analytics tables and the agents' state live, and the sink that writes the tables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from loopline.settings.base import DEFAULT_DATA_DIR, env_prefix

__all__ = ["ClickHouseSettings", "SinkSettings", "StateSettings"]


class ClickHouseSettings(BaseSettings):
    """Where the analytics tables live."""

    model_config = env_prefix("LOOPLINE_CLICKHOUSE_", hide_input_in_errors=True)

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


class StateSettings(BaseSettings):
    """The state stores of the join, the drift monitors and the rollback guard."""

    model_config = env_prefix("LOOPLINE_STATE_")

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

    model_config = env_prefix("LOOPLINE_SINK_")

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
