"""Shared fixtures: one real Kafka broker and one chdb directory per test session.

Each test gets its own topic prefix and ClickHouse database, so tests never share state.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopline.kafka.broker import Broker
from loopline.settings import BrokerSettings, ClickHouseSettings, KafkaSettings


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """The session's broker, started once on a free port."""
    local = Broker(BrokerSettings(data_dir=tmp_path_factory.mktemp("kafka"), port=0))
    local.start()
    yield local
    local.stop()


@pytest.fixture
def kafka(broker: Broker) -> KafkaSettings:
    """Settings that reach the session broker, with topic names unique to this test."""
    assert broker.bootstrap_servers is not None
    return KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        topic_prefix=f"t{uuid.uuid4().hex[:12]}.",
        partitions=2,
    )


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's embedded ClickHouse directory (one per process, as chdb requires)."""
    return tmp_path_factory.mktemp("clickhouse")


@pytest.fixture
def clickhouse(chdb_dir: Path) -> ClickHouseSettings:
    """Settings for a ClickHouse database unique to this test."""
    return ClickHouseSettings(dsn=f"chdb://{chdb_dir}", database=f"t_{uuid.uuid4().hex[:12]}")
