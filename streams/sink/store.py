"""The sink's side of ClickHouse: one client, opened on first use and again after a failure.

The same client answers analytics queries from other processes (:mod:`loopline.analytics.server`),
because an embedded chdb directory can be open in one process only. A lock keeps the inserts and
the queries of the two threads apart.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from clickhouse_connect.driver.client import Client

from loopline.analytics.results import Result
from loopline.settings import ClickHouseSettings
from loopline.sink.core import SinkBatch
from loopline.store import connect, migrate

__all__ = ["Store"]

log = logging.getLogger(__name__)


class Store:
    """ClickHouse as the sink uses it."""

    def __init__(self, settings: ClickHouseSettings) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        self.client: Client | None = None

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

    def insert(self, batch: SinkBatch) -> None:
        """Insert every row of ``batch``, one insert per table and ClickHouse partition (day).

        Raises:
            Exception: whatever the client raised; the connection is dropped and opened again on the next call.
        """
        with self.lock:
            try:
                client = self._open()
                for table, rows in batch.rows.items():
                    for part in table.partitions(rows):
                        client.insert(table.table, part, column_names=list(table.columns))
            except Exception:
                self._drop()
                raise

    def query(self, sql: str, parameters: dict[str, Any], settings: dict[str, Any]) -> Result:
        """Run one read query with bound parameters and ClickHouse ``settings`` (the endpoint's: read-only)."""
        with self.lock:
            return Result.of(self._open().query(sql, parameters=parameters, settings=settings))

    def close(self) -> None:
        with self.lock:
            self._drop()
