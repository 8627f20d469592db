"""The query endpoint of the sink worker: other processes' queries run on the sink's own client.

An embedded chdb directory can be open in one process only; while the sink runs, that process is
the sink, so ``loopline query`` sends its SQL and parameters here. Anything that reaches the port
can send a request, so the endpoint answers only a request that

- names the endpoint by an IP address, ``localhost`` or ``LOOPLINE_SINK_QUERY_HOST`` in its
  ``Host`` header, with the endpoint's port: a web page that rebinds its own DNS name to this
  address sends that name;
- is ``Content-Type: application/json``, which a web page can't send to another origin without a
  CORS preflight, and the endpoint answers no preflight;
- carries the sink's token as ``Authorization: Bearer <token>``: ``LOOPLINE_SINK_QUERY_TOKEN``, or
  a new one per start, written to a file only the sink's user can read (``SinkSettings.token_file``).

Then it applies the query rules itself (:mod:`loopline.analytics.queries`): one statement that only
reads, run with ``readonly=1`` and the limits of ``LOOPLINE_SINK_QUERY_*``. It listens on the
loopback interface unless told otherwise.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from loopline.analytics.queries import QueryError, query_settings, read_only_statement
from loopline.analytics.results import Result
from loopline.settings import SinkSettings

__all__ = ["MAX_REQUEST_BYTES", "QueryServer", "Queryable", "ask", "read_token", "write_token"]

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1 << 20
"""Largest request body the endpoint reads."""


class Queryable(Protocol):
    def query(self, sql: str, parameters: dict[str, Any], settings: dict[str, Any]) -> Result: ...


def write_token(path: Path) -> str:
    """A new random token, written to ``path`` so that only this user can read it (mode 0600).

    The file is written beside its final name and moved there, so it is never readable by others,
    and a link at ``path`` is replaced, not followed.
    """
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token)
    os.replace(partial, path)
    return token


def read_token(sink: SinkSettings) -> str | None:
    """The endpoint's token: ``LOOPLINE_SINK_QUERY_TOKEN``, else the token file's; None if neither can be read."""
    if sink.query_token is not None:
        return sink.query_token.get_secret_value()
    try:
        return sink.token_file.read_text().strip() or None
    except OSError:
        return None


HOST = re.compile(r"(?P<name>[A-Za-z0-9.-]+|\[(?P<ipv6>[0-9A-Fa-f:.]+)\])(?::(?P<port>[0-9]{1,5}))?")


def _host_allowed(host: str, port: int, own_host: str) -> bool:
    """Whether a ``Host`` header names this endpoint: an IP address, ``localhost`` or its own host, with its port."""
    named = HOST.fullmatch(host)
    if named is None or int(named["port"] or 80) != port:
        return False
    name = (named["ipv6"] or named["name"]).lower()
    if name in ("localhost", own_host.lower()):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class QueryServer:
    """Serves ``POST /query`` with ``{"sql": ..., "parameters": {...}}`` from a thread.

    The token is ``settings.query_token``, or a new one written to ``settings.token_file`` once the
    port is bound (a sink that can't bind it leaves the token of the one that did) and removed at stop.
    """

    def __init__(self, store: Queryable, settings: SinkSettings) -> None:
        outer, store_, own_host = self, store, settings.query_host
        limits = query_settings(settings)
        token_help = (
            "the sink's token, as 'Authorization: Bearer <token>' (from LOOPLINE_SINK_QUERY_TOKEN, or the file "
            f"{settings.token_file} that the sink's user can read)"
        )

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                refused = self._refusal()
                if refused is not None:
                    self._answer(*refused)
                    return
                try:
                    request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                    sql = read_only_statement(request["sql"])
                    result = store_.query(sql, request.get("parameters", {}), limits)
                    self._answer(200, {"columns": result.columns, "rows": result.rows})
                except Exception as exc:  # the caller gets the database's message, the sink keeps running
                    self._answer(400, {"error": str(exc)})

            def _refusal(self) -> tuple[int, dict[str, Any], dict[str, str]] | None:
                """The status, body and headers refusing this request, or None if it may run."""
                if urlsplit(self.path).path != "/query":
                    return 404, {"error": "the endpoint is POST /query"}, {}
                host = self.headers.get("Host", "")
                if not _host_allowed(host, outer.server.server_port, own_host):
                    return 403, {"error": f"the Host header {host[:100]!r} does not name this endpoint"}, {}
                if self.headers.get_content_type() != "application/json":
                    return 415, {"error": "a query is sent as Content-Type: application/json"}, {}
                given = self.headers.get("Authorization", "").encode()
                if not hmac.compare_digest(given, outer.authorization):
                    return 401, {"error": f"the query endpoint wants {token_help}"}, {"WWW-Authenticate": "Bearer"}
                length = self.headers.get("Content-Length", "")
                if not length.isdigit() or int(length) > MAX_REQUEST_BYTES:
                    return 413, {"error": f"a request body has a Content-Length of at most {MAX_REQUEST_BYTES}"}, {}
                return None

            def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug(format, *args)

        self.server = ThreadingHTTPServer((settings.query_host, settings.query_port), Handler)
        self.written: tuple[Path, str] | None = None
        if settings.query_token is not None:
            token = settings.query_token.get_secret_value()
        else:
            token = write_token(settings.token_file)
            self.written = settings.token_file, token
        self.authorization = f"Bearer {token}".encode()
        self.thread = threading.Thread(target=self.server.serve_forever, name="query-server", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop serving, and remove the token file written at start unless another sink wrote it since."""
        self.server.shutdown()
        self.server.server_close()
        if self.written is not None:
            path, token = self.written
            try:
                if path.read_text() == token:
                    path.unlink()
            except OSError:
                log.debug("the token file %s was removed already", path)


def ask(url: str, sql: str, parameters: dict[str, Any], token: str | None, timeout_s: float) -> Result:
    """Run a query through a sink's endpoint, with its ``token``, waiting ``timeout_s`` at most.

    Raises:
        ConnectionError: nothing answers at ``url``.
        QueryError: the endpoint or the database refused the query, or no answer came in time.
    """
    data = json.dumps({"sql": sql, "parameters": parameters}).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read())["error"]
        except (ValueError, KeyError, TypeError):
            reason = str(exc)
        raise QueryError(reason) from None
    except TimeoutError:
        raise QueryError(f"the sink's query endpoint at {url} did not answer within {timeout_s:g}s") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise QueryError(f"the sink's query endpoint at {url} did not answer within {timeout_s:g}s") from None
        raise ConnectionError(f"no sink answers at {url}: {exc.reason}") from None
    return Result(body["columns"], body["rows"])
