"""The sink's query endpoint: who it answers, what it runs, and for how long."""

import http.client
import json
import os
import socket
import stat
import threading

import pytest
from pydantic import SecretStr

from loopline.analytics.queries import QueryError
from loopline.analytics.server import QueryServer, ask, read_token
from loopline.kafka.broker import free_port
from loopline.settings import SinkSettings
from loopline.sink.clickhouse import ClickHouseSink
from loopline.store import connect
from tests.samples import load_analytics_records
from tests.workers import wait_for


@pytest.fixture
def endpoint(clickhouse, tmp_path):
    """A running endpoint on the sink's store, its settings and the store."""
    client = connect(clickhouse)
    load_analytics_records(client)
    client.close()
    settings = SinkSettings(query_port=free_port(), query_token_file=tmp_path / "sink" / "token", query_timeout_s=1)
    store = ClickHouseSink(clickhouse)
    server = QueryServer(store, settings)
    server.start()
    yield settings, store
    server.stop()
    store.close()


def post(settings, headers, body=None):
    """The status and the JSON body of a raw ``POST /query`` with exactly ``headers``."""
    connection = http.client.HTTPConnection("127.0.0.1", settings.query_port, timeout=60)
    connection.putrequest("POST", "/query", skip_host=True, skip_accept_encoding=True)
    data = json.dumps(body or {"sql": "SELECT count() AS n FROM labels", "parameters": {}}).encode()
    for name, value in (headers | {"Content-Length": str(len(data))}).items():
        connection.putheader(name, value)
    connection.endheaders(data)
    response = connection.getresponse()
    try:
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_the_token_file_is_new_at_each_start_and_readable_by_the_sink_user_only(endpoint):
    settings, store = endpoint
    token = read_token(settings)
    assert token and stat.S_IMODE(os.stat(settings.token_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(settings.token_file.parent).st_mode) == 0o700
    with pytest.raises(OSError):
        QueryServer(store, settings)  # the port is taken: the running endpoint's token stays
    assert read_token(settings) == token
    again = QueryServer(store, settings.model_copy(update={"query_port": free_port()}))
    assert read_token(settings) not in (None, token)
    again.start()
    again.stop()
    assert not settings.token_file.exists()  # the endpoint that wrote it has stopped


def test_only_a_request_with_the_token_its_own_host_and_json_is_answered(endpoint):
    settings, _ = endpoint
    port, token = settings.query_port, read_token(settings)
    right = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    refusals = {
        "no token": ({k: v for k, v in right.items() if k != "Authorization"}, 401, "token"),
        "a wrong token": (right | {"Authorization": f"Bearer {token[:-1]}x"}, 401, "token"),
        "another scheme": (right | {"Authorization": f"Basic {token}"}, 401, "token"),
        "a foreign host": (right | {"Host": f"rebound.example:{port}"}, 403, "Host header"),
        "a user in the host": (right | {"Host": f"rebound.example@127.0.0.1:{port}"}, 403, "Host header"),
        "another port": (right | {"Host": f"127.0.0.1:{port + 1}"}, 403, "Host header"),
        "no host": ({k: v for k, v in right.items() if k != "Host"}, 403, "Host header"),
        "text/plain": (right | {"Content-Type": "text/plain"}, 415, "application/json"),
        "a form": (right | {"Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json"),
    }
    for case, (headers, status, reason) in refusals.items():
        answer = post(settings, headers)
        assert answer[0] == status and reason in answer[1]["error"], case
    for host in [f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"]:
        headers = right | {"Host": host, "Content-Type": "application/json; charset=utf-8"}
        assert post(settings, headers) == (200, {"columns": ["n"], "rows": [[10]]}), host
    assert ask(settings.query_url, "SELECT count() FROM labels", {}, token, 60).rows == [[10]]
    with pytest.raises(QueryError, match="token"):
        ask(settings.query_url, "SELECT count() FROM labels", {}, None, 60)


def test_no_cors_preflight_is_answered(endpoint):
    settings, _ = endpoint
    connection = http.client.HTTPConnection("127.0.0.1", settings.query_port, timeout=60)
    connection.request("OPTIONS", "/query", headers={"Origin": "http://rebound.example",
                                                     "Access-Control-Request-Method": "POST"})  # fmt: skip
    response = connection.getresponse()
    assert response.status == 501 and response.getheader("Access-Control-Allow-Origin") is None
    connection.close()


def test_a_token_given_by_a_setting_is_the_one_required_and_no_file_is_written(clickhouse, tmp_path):
    settings = SinkSettings(query_port=free_port(), query_token=SecretStr("given-token"),
                            query_token_file=tmp_path / "token")  # fmt: skip
    store = ClickHouseSink(clickhouse)
    server = QueryServer(store, settings)
    server.start()
    try:
        assert ask(settings.query_url, "SELECT 1 AS one", {}, "given-token", 60).rows == [[1]]
        with pytest.raises(QueryError, match="token"):
            ask(settings.query_url, "SELECT 1 AS one", {}, "another", 60)
        assert not settings.token_file.exists() and read_token(settings) == "given-token"
    finally:
        server.stop()
        store.close()


def test_the_endpoint_refuses_what_writes_files_or_controls_the_store(endpoint, tmp_path):
    settings, _ = endpoint
    token = read_token(settings)
    kept, secret = tmp_path / "v.txt", tmp_path / "secret.txt"
    kept.write_text("kept\n")
    secret.write_text("s3cret\n")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/data.csv"
    refused = {
        f"SELECT 'x' INTO OUTFILE '{kept}' TRUNCATE": "INTO OUTFILE",
        f"SELECT 'x' INTO OUTFILE '{kept}' APPEND": "INTO OUTFILE",
        f"SELECT 'x' INTO OUTFILE '{tmp_path / 'new.txt'}'": "INTO OUTFILE",
        "SYSTEM STOP MERGES": "only statements that read",
        "SYSTEM STOP TTL MERGES": "only statements that read",
        "KILL QUERY WHERE 1 SYNC": "only statements that read",
        f"SELECT file('{secret}')": "reaches outside",
        f"DESCRIBE file('{secret}', 'CSVWithNames')": "reaches outside",
        f"DESCRIBE url('{url}', 'CSV')": "reaches outside",
        f"SELECT * FROM url('{url}', 'CSV', 'a String')": "reaches outside",
    }
    for sql, reason in refused.items():
        with pytest.raises(QueryError, match=reason):
            ask(settings.query_url, sql, {}, token, 60)
    assert kept.read_text() == "kept\n" and not (tmp_path / "new.txt").exists()
    with pytest.raises(BlockingIOError):
        listener.accept()  # no request reached the network
    listener.close()


def test_a_long_query_is_stopped_at_its_limit_and_the_next_one_is_answered(endpoint):
    settings, store = endpoint
    token = read_token(settings)
    outcome = {}

    def long_query():
        try:
            ask(settings.query_url, "SELECT count() FROM numbers(1e13)", {}, token, 60)
        except QueryError as exc:
            outcome["error"] = str(exc)

    running = threading.Thread(target=long_query)
    running.start()
    wait_for(store.lock.locked, what="the long query running on the sink's client")
    # Sent while the long query holds the sink's client: answered once that one is stopped.
    assert ask(settings.query_url, "SELECT count() AS n FROM labels", {}, token, 60).rows == [[10]]
    running.join()
    assert "TIMEOUT_EXCEEDED" in outcome["error"]
