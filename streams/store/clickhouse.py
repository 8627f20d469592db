"""A ClickHouse client from a DSN, and the idempotent migrations in ``ops/clickhouse``.

``chdb://<dir>`` (``chdb:///<absolute dir>``) opens the embedded engine of the chdb package in this
process (one directory is open in one process at a time); ``http(s)://user:password@host:8123/db``
reaches a server. Both return the same clickhouse-connect client API. The settings refuse any
other scheme.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from loopline.errors import ConfigError, Unreachable
from loopline.paths import CLICKHOUSE_DIR
from loopline.settings import ClickHouseSettings

__all__ = ["ConfigError", "check_dsn", "check_store", "connect", "location", "migrate", "migration_files"]


@contextmanager
def _quiet_driver() -> Iterator[None]:
    """Silence the driver's own error line while connecting: the exception raised carries the same reason."""
    driver_log = logging.getLogger("clickhouse_connect")
    level = driver_log.level
    driver_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        driver_log.setLevel(level)


def connect(settings: ClickHouseSettings) -> Client:
    """Open a client for ``settings.dsn`` (``chdb://`` embedded, else a server over HTTP)."""
    dsn = settings.dsn.get_secret_value()
    with _quiet_driver():
        if urlsplit(dsn).scheme == "chdb":
            path = Path(dsn.removeprefix("chdb://")).expanduser()
            path.mkdir(parents=True, exist_ok=True)
            client = clickhouse_connect.get_client(dsn=f"chdb://{path.resolve()}")
        elif settings.password is None:
            client = clickhouse_connect.get_client(dsn=dsn)
        else:
            client = clickhouse_connect.get_client(dsn=dsn, password=settings.password.get_secret_value())
    if settings.database is not None:
        client.command(f"CREATE DATABASE IF NOT EXISTS {settings.database}")
        client.database = settings.database
    return client


def location(settings: ClickHouseSettings) -> str:
    """The DSN without its user and password, for messages."""
    parts = urlsplit(settings.dsn.get_secret_value())
    if parts.scheme == "chdb":
        return settings.dsn.get_secret_value()
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_dsn(settings: ClickHouseSettings) -> None:
    """Check, without connecting, that the DSN can work: an embedded store's directory can be created and written.

    The sink calls this at start: a store that is down (a server restarting, an embedded directory
    held by another process) is waited for with the input held, but a DSN that can never work stops
    the worker instead of an insert retried forever. The settings already refuse unknown schemes
    and server DSNs without a host.

    Raises:
        ConfigError: the embedded store's directory can't be created or written.
    """
    dsn = settings.dsn.get_secret_value()
    if urlsplit(dsn).scheme != "chdb":
        return
    path = Path(dsn.removeprefix("chdb://")).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"the embedded ClickHouse store {path} can't be created: {exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"the embedded ClickHouse store {path} is not writable by this user")


def check_store(settings: ClickHouseSettings) -> None:
    """Open the store once and close it again, so that a command says at once why it can't.

    Raises:
        Unreachable: the store does not answer, refuses the credentials, or (embedded) its
            directory can't be opened here, e.g. because another process holds it.
    """
    try:
        connect(settings).close()  # connecting asks the server (or the engine) for its settings: it answers
    except (ClickHouseError, OSError) as exc:
        reason = " ".join(str(exc).split())
        if settings.dsn.get_secret_value().startswith("chdb:"):
            reason += " (one process at a time opens an embedded store: does a sink or another command hold it?)"
        raise Unreachable(f"cannot open the ClickHouse store at {location(settings)}: {reason}") from None


def migration_files() -> list[Path]:
    """The DDL files, in the order they are applied."""
    return sorted(CLICKHOUSE_DIR.glob("*.sql"))


def migrate(client: Client) -> list[str]:
    """Apply every DDL file (each is ``CREATE ... IF NOT EXISTS``); return the applied names."""
    applied = []
    for path in migration_files():
        client.command(path.read_text())
        applied.append(path.stem)
    return applied
