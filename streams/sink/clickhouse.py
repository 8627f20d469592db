"""ClickHouse as the sink writes and queries it: one client, opened on first use and again after a failure.

The same client answers analytics queries from other processes (:mod:`loopline.analytics.server`),
because an embedded chdb directory can be open in one process only. A lock keeps the flushes and
the queries of the two threads apart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from clickhouse_connect.driver.client import Client

from loopline.analytics.results import Result
from loopline.settings import ClickHouseSettings
from loopline.sink.tables import Row, Table
from loopline.store import connect, migrate

__all__ = ["ClickHouseSink"]

log = logging.getLogger(__name__)


class ClickHouseSink:
    """A :class:`~loopline.sink.base.Sink` into ClickHouse (embedded chdb or a server), whose tables
    (``ops/clickhouse``, created on first use) are ReplacingMergeTree: rows flushed twice collapse
    into one when read with ``FINAL``.

    Args:
        settings: where the store is (``LOOPLINE_CLICKHOUSE_*``).
    """

    def __init__(self, settings: ClickHouseSettings) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        self.client: Client | None = None
        self.pending: dict[Table, list[Row]] = {}

    def add(self, table: Table, rows: Sequence[Row]) -> None:
        """Buffer ``rows`` of ``table`` until the next :meth:`flush`."""
        self.pending.setdefault(table, []).extend(rows)

    def flush(self) -> None:
        """Insert every buffered row, one insert per table and ClickHouse partition (day).

        Raises:
            Exception: whatever the client raised; the rows stay buffered, and the connection is
                dropped and opened again by the next call.
        """
        with self.lock:
            try:
                client = self._open()
                for table, rows in self.pending.items():
                    for part in table.partitions(rows):
                        client.insert(table.table, part, column_names=list(table.columns))
            except Exception:
                self._drop()
                raise
            self.pending = {}

    def query(self, sql: str, parameters: dict[str, Any], settings: dict[str, Any]) -> Result:
        """Run one read query with bound parameters and ClickHouse ``settings`` (the endpoint's: read-only)."""
        with self.lock:
            return Result.of(self._open().query(sql, parameters=parameters, settings=settings))

    def close(self) -> None:
        """Close the client (rows still buffered are not written)."""
        with self.lock:
            self._drop()

    def _open(self) -> Client:
        if self.client is None:
            client = connect(self.settings)
            migrate(client)
            self.client = client
            log.info("ClickHouse store open")
        return self.client

    def _drop(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # a broken connection may fail to close as well
                log.debug("closing the failed client failed too", exc_info=True)
            self.client = None
