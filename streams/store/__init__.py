"""The analytics store: ClickHouse, embedded (chdb) or a server."""

from loopline.store.clickhouse import ConfigError, check_dsn, check_store, connect, migrate

__all__ = ["ConfigError", "check_dsn", "check_store", "connect", "migrate"]
