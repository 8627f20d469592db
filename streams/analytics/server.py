"""The query endpoint of the sink worker: other processes' queries run on the sink's own client.

An embedded chdb directory can be open in one process only; while the sink runs, that process is
the sink, so ``loopline query`` sends its SQL and parameters here. Anything that reaches the port
can send SQL, so the endpoint itself applies the query rules: one statement, run read-only
(:mod:`streams.analytics.queries`). It listens on the loopback interface unless told otherwise.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from streams.analytics.queries import READ_ONLY, QueryError, one_statement
from streams.analytics.results import Result

__all__ = ["QueryServer", "Queryable", "ask"]

log = logging.getLogger(__name__)


class Queryable(Protocol):
    def query(self, sql: str, parameters: dict[str, Any], settings: dict[str, Any]) -> Result: ...


class QueryServer:
    """Serves ``POST /query`` with ``{"sql": ..., "parameters": {...}}`` from a thread."""

    def __init__(self, store: Queryable, host: str, port: int) -> None:
        store_ = store

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                try:
                    request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                    result = store_.query(one_statement(request["sql"]), request.get("parameters", {}), READ_ONLY)
                    self._answer(200, {"columns": result.columns, "rows": result.rows})
                except Exception as exc:  # the caller gets the database's message, the sink keeps running
                    self._answer(400, {"error": str(exc)})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug(format, *args)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="query-server", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def ask(url: str, sql: str, parameters: dict[str, Any], timeout_s: float = 60.0) -> Result:
    """Run a query through a sink's endpoint.

    Raises:
        ConnectionError: nothing answers at ``url``.
        QueryError: the endpoint or the database refused the query.
    """
    data = json.dumps({"sql": sql, "parameters": parameters}).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise QueryError(json.loads(exc.read()).get("error", str(exc))) from None
    except urllib.error.URLError as exc:
        raise ConnectionError(f"no sink answers at {url}: {exc.reason}") from None
    return Result(body["columns"], body["rows"])
