"""The analytics store: ClickHouse, embedded (chdb) or a server."""

from streams.store.clickhouse import ConfigError, connect, migrate

__all__ = ["ConfigError", "connect", "migrate"]
