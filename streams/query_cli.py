"""``loopline query``: canned analytics and your own SQL, as a table, CSV or JSON.

With an embedded store (``chdb://``) the query goes to the sink worker's endpoint when a sink runs
(it owns the store), and opens the store in this process otherwise. With a server DSN it goes to
the server. Either way it is one statement that only reads, run read-only and within the limits
of ``LOOPLINE_SINK_QUERY_*`` (:mod:`loopline.analytics.queries`); the endpoint wants the sink's token
(:func:`loopline.analytics.server.read_token`).
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import urlsplit

from clickhouse_connect.driver.exceptions import ProgrammingError

from loopline.analytics.queries import DEFAULTS, QUERIES, query_settings, read_only_statement
from loopline.analytics.results import Result
from loopline.analytics.server import ask, read_token
from loopline.errors import ConfigError
from loopline.settings import ClickHouseSettings, SinkSettings
from loopline.store import connect

__all__ = ["add_query_parser", "run_query"]


def run_query(sql: str, parameters: dict[str, Any], clickhouse: ClickHouseSettings, sink: SinkSettings) -> Result:
    """Run ``sql`` with bound ``parameters`` wherever the store answers, as one read-only statement.

    The endpoint runs one query at a time, so the answer is awaited for two query time limits (one
    to wait for, one to run) and a margin.

    Raises:
        QueryError: the query is not one statement that only reads, or the endpoint refused it.
    """
    sql = read_only_statement(sql)
    embedded = urlsplit(clickhouse.dsn.get_secret_value()).scheme == "chdb"
    if embedded and sink.query_port:
        try:
            return ask(sink.query_url, sql, parameters, read_token(sink), 2 * sink.query_timeout_s + 10)
        except ConnectionError:
            pass  # no sink runs: the store is free to open here
    try:
        client = connect(clickhouse)
    except ProgrammingError as exc:
        if not embedded:
            raise
        raise ConfigError(
            f"the embedded store can't be opened here ({exc}); another process holds it: if it is a sink, "
            "set LOOPLINE_SINK_QUERY_PORT to the port of its query endpoint"
        ) from None
    try:
        return Result.of(client.query(sql, parameters=parameters, settings=query_settings(sink)))
    finally:
        client.close()


def _parameters(args: argparse.Namespace) -> dict[str, Any]:
    if args.sql is None:
        return {"model": args.model, "since": args.since, "bucket_s": args.bucket_s}
    parameters = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--param takes NAME=VALUE, not {item!r}")
        parameters[name] = value
    return parameters


def cmd_query(args: argparse.Namespace) -> int:
    if args.list or (args.name is None and args.sql is None):
        for query in QUERIES.values():
            print(f"{query.name:<14}{query.description}")
        return 0
    if args.name is not None and args.sql is not None:
        raise ConfigError("give a query name or --sql, not both")
    sql = args.sql if args.sql is not None else QUERIES[args.name].sql
    result = run_query(sql, _parameters(args), ClickHouseSettings(), SinkSettings())
    print({"table": result.to_table, "csv": result.to_csv, "json": result.to_json}[args.format]())
    return 0


def add_query_parser(sub: Any) -> None:
    """Add ``loopline query`` to the command line."""
    query = sub.add_parser("query", help="analytics from ClickHouse: a canned query by name, or --sql")
    query.add_argument(
        "name", nargs="?", choices=sorted(QUERIES), help="a canned query (--list says what each answers)"
    )
    query.add_argument("--sql", help="your own query; bind values with {name:Type} and --param name=value")
    query.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a parameter of --sql")
    query.add_argument("--model", default=DEFAULTS["model"], help="only this model (canned queries)")
    query.add_argument("--since", default=DEFAULTS["since"], help="only events since this UTC time (canned queries)")
    query.add_argument("--bucket-s", default=DEFAULTS["bucket_s"], help="time bucket in seconds (accuracy)")
    query.add_argument("--format", choices=["table", "csv", "json"], default="table")
    query.add_argument("--list", action="store_true", help="list the canned queries")
    query.set_defaults(func=cmd_query)
