"""A ClickHouse client from a DSN, and the idempotent migrations in ``ops/clickhouse``.

``chdb://<dir>`` (``chdb:///<absolute dir>``) opens the embedded engine of the chdb package in this
process (one directory is open in one process at a time); ``http(s)://user:password@host:8123/db``
reaches a server. Both return the same clickhouse-connect client API.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from streams.errors import ConfigError
from streams.paths import OPS_DIR
from streams.settings import ClickHouseSettings

__all__ = ["ConfigError", "connect", "migrate", "migration_files"]

MIGRATIONS_DIR = OPS_DIR / "clickhouse"


def connect(settings: ClickHouseSettings) -> Client:
    """Open a client for ``settings.dsn``.

    Raises:
        ConfigError: the DSN scheme is neither ``chdb`` nor ``http``/``https``.
    """
    dsn = settings.dsn.get_secret_value()
    scheme = urlsplit(dsn).scheme
    if scheme == "chdb":
        path = Path(dsn.removeprefix("chdb://")).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        client = clickhouse_connect.get_client(dsn=f"chdb://{path.resolve()}")
    elif scheme in ("http", "https"):
        if settings.password is None:
            client = clickhouse_connect.get_client(dsn=dsn)
        else:
            client = clickhouse_connect.get_client(dsn=dsn, password=settings.password.get_secret_value())
    else:
        raise ConfigError(
            f"unknown ClickHouse DSN scheme {scheme!r} in LOOPLINE_CLICKHOUSE_DSN: use "
            "chdb://<dir> (embedded) or http(s)://user:password@host:8123/db (server)"
        )
    if settings.database is not None:
        client.command(f"CREATE DATABASE IF NOT EXISTS {settings.database}")
        client.database = settings.database
    return client


def migration_files() -> list[Path]:
    """The DDL files, in the order they are applied."""
    return sorted(MIGRATIONS_DIR.glob("*.sql"))


def migrate(client: Client) -> list[str]:
    """Apply every DDL file (each is ``CREATE ... IF NOT EXISTS``); return the applied names."""
    applied = []
    for path in migration_files():
        client.command(path.read_text())
        applied.append(path.stem)
    return applied
