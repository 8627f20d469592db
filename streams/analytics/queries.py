"""The canned analytics queries of ``loopline query``, and the rules every query obeys.

Values are bound as query parameters, never pasted. Whichever way a query reaches the store, it is
checked here first (:func:`read_only_statement`) and runs with :func:`query_settings`:

- one statement, of a kind that reads: ``SELECT``, ``WITH ... SELECT``, ``SHOW``, ``DESCRIBE``,
  ``EXPLAIN``, ``EXISTS`` (``readonly=1`` alone lets ``SYSTEM STOP MERGES`` and ``KILL QUERY`` run).
- no ``INTO OUTFILE``, which ``readonly=1`` lets write any file the store's user can write, and no
  function that reaches outside the database (:data:`OUTSIDE`): ``readonly=1`` refuses most table
  functions in a ``SELECT`` but lets ``SELECT file('/etc/passwd')`` read a file and
  ``DESCRIBE url(...)`` send requests (chdb 26.9). The check reads tokens the way ClickHouse's lexer
  does (:func:`_skip`), so strings, quoted names and comments neither hide a call nor fake one.
- ClickHouse's ``readonly=1`` (no writes, no DDL, no setting changed) and limits on run time,
  memory and result rows, which ClickHouse's defaults leave unbounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from loopline.settings import SinkSettings

__all__ = [
    "DEFAULTS",
    "OUTSIDE",
    "QUERIES",
    "READING",
    "Query",
    "QueryError",
    "one_statement",
    "query_settings",
    "read_only_statement",
]


class QueryError(RuntimeError):
    """The query was refused, by the rules here or by the database; the message says why."""


def query_settings(sink: SinkSettings) -> dict[str, Any]:
    """The ClickHouse settings of every analytics query: its limits, then ``readonly=1``.

    ``readonly`` comes last: it refuses every setting after it in the same list, the limits included.
    """
    return {
        "max_execution_time": sink.query_timeout_s,
        "max_memory_usage": sink.query_max_memory_bytes,
        "max_result_rows": sink.query_max_result_rows,
        "readonly": 1,
    }


QUOTES = "'\"`"
HEREDOC = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def _skip(sql: str, i: int) -> int:
    """The index after the quoted string, comment or heredoc starting at ``i``; ``i`` if none starts there.

    The forms are ClickHouse's lexer's: quotes escaped by a backslash or doubled, ``--`` and ``# ``/``#!``
    line comments, nestable ``/* */`` comments, ``$tag$...$tag$`` heredocs (not inside a name, which may hold
    ``$``). An unterminated one runs to the end.
    """
    char, pair = sql[i], sql[i : i + 2]
    if char in QUOTES:
        j = i + 1
        while j < len(sql):
            if sql[j] == "\\" or sql[j : j + 2] == char * 2:  # an escaped or a doubled quote
                j += 2
            elif sql[j] == char:
                return j + 1
            else:
                j += 1
        return len(sql)
    if pair == "--" or pair in ("# ", "#!"):
        end = sql.find("\n", i)
        return len(sql) if end < 0 else end + 1
    if pair == "/*":
        depth, j = 1, i + 2
        while j < len(sql) and depth:
            if sql.startswith("/*", j):
                depth, j = depth + 1, j + 2
            elif sql.startswith("*/", j):
                depth, j = depth - 1, j + 2
            else:
                j += 1
        return j
    if (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] in "_$")) and (heredoc := HEREDOC.match(sql, i)):
        end = sql.find(heredoc.group(), heredoc.end())
        return len(sql) if end < 0 else end + len(heredoc.group())
    return i


def one_statement(sql: str) -> str:
    """``sql`` without its trailing ``;`` (and the comments after it), if it holds exactly one statement.

    An embedded store runs every statement of a ``;``-separated script, so ``SELECT 1; DROP TABLE x``
    is refused here, before it reaches the store; ``;`` inside strings, quoted names and comments
    does not count.

    Raises:
        QueryError: there is no statement, or more than one.
    """
    end: int | None = None  # the first statement's ';'
    code = False
    i = 0
    while i < len(sql):
        skipped = _skip(sql, i)
        comment = skipped > i and sql[i] not in QUOTES and sql[i] != "$"
        if sql[i] == ";":
            if not code:
                raise QueryError("the query has no statement before its ';'")
            end = i if end is None else end
        elif not comment and not sql[i].isspace():
            if end is not None:
                raise QueryError(f"one statement per query: more follows the ';' at character {end + 1}")
            code = True
        i = max(skipped, i + 1)
    if not code:
        raise QueryError("the query is empty")
    return sql[:end] if end is not None else sql


READING = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
"""The statement kinds a query may be (after any opening parentheses)."""

OUTSIDE = frozenset(name.lower() for name in (
    "file", "fileCluster", "filesystem", "url", "urlCluster", "s3", "s3Cluster", "gcs", "cosn", "oss", "hdfs",
    "hdfsCluster", "azureBlobStorage", "azureBlobStorageCluster", "remote", "remoteSecure", "cluster",
    "clusterAllReplicas", "mysql", "postgresql", "mongodb", "redis", "sqlite", "odbc", "jdbc", "bigquery", "ytsaurus",
    "executable", "eval", "python", "input", "arrowstream", "iceberg", "icebergS3", "icebergAzure", "icebergHDFS",
    "icebergLocal", "icebergCluster", "icebergS3Cluster", "icebergAzureCluster", "icebergHDFSCluster",
    "icebergLocalCluster", "deltaLake", "deltaLakeS3", "deltaLakeAzure", "deltaLakeLocal", "deltaLakeCluster",
    "deltaLakeS3Cluster", "deltaLakeAzureCluster", "hudi", "hudiCluster", "paimon", "paimonS3", "paimonAzure",
    "paimonHDFS", "paimonLocal", "paimonCluster", "paimonS3Cluster", "paimonAzureCluster", "paimonHDFSCluster",
))  # fmt: skip
"""Functions (table functions and ``file``) that read or write files, reach the network, run
processes or read the process's Python objects (chdb's ``python``), in lower case: a call of any of
them is refused, whatever its case. Every other table function of chdb 26.9 reads generated data or
the store's own tables."""

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*|[0-9][A-Za-z0-9_.]*")


def _tokens(sql: str) -> Iterator[str]:
    """The tokens of ``sql``: names, keywords and numbers, quoted names and strings (with their
    quotes), and other characters one by one; comments and whitespace are left out."""
    i = 0
    while i < len(sql):
        if word := NAME.match(sql, i):
            yield word.group()
            i = word.end()
            continue
        skipped = _skip(sql, i)
        if skipped > i:
            if sql[i] in QUOTES or sql[i] == "$":
                yield sql[i:skipped]
            i = skipped
        else:
            if not sql[i].isspace():
                yield sql[i]
            i += 1


def read_only_statement(sql: str) -> str:
    """The one statement of ``sql`` (:func:`one_statement`), if it only reads inside the database.

    Raises:
        QueryError: it is not one statement, not of a kind in :data:`READING`, writes a file with
            ``INTO OUTFILE``, or calls a function of :data:`OUTSIDE` (or any function by a quoted name).
    """
    statement = one_statement(sql)
    tokens = list(_tokens(statement))
    kind = next((t for t in tokens if t != "("), "")
    if kind.upper() not in READING:
        raise QueryError(f"only statements that read run here ({', '.join(READING)}), not {kind[:40]!r}")
    for token, after in pairwise(tokens):
        if token.upper() == "INTO" and after.upper() == "OUTFILE":
            raise QueryError("INTO OUTFILE writes a file where the store runs: take --format csv or json instead")
        if after != "(":
            continue
        if token[0] in '`"':
            raise QueryError(f"call functions by their plain names, not {token[:40]}")
        if token.lower() in OUTSIDE:
            raise QueryError(f"{token}() reaches outside the database (files, network, processes): not allowed here")
    return statement


DEFAULTS = {"model": "", "since": "1970-01-01 00:00:00", "bucket_s": "60"}
"""Parameters every canned query takes: ``model`` ('' for all), ``since`` (UTC), ``bucket_s``."""

WHERE = "({model:String} = '' OR model_name = {model:String}) AND event_time >= {since:DateTime64(3, 'UTC')}"


@dataclass(frozen=True)
class Query:
    """A named query and what it answers."""

    name: str
    description: str
    sql: str


QUERIES = {
    query.name: query
    for query in [
        Query(
            "accuracy",
            "accuracy and log loss of the served predictions by model version, per time bucket",
            f"""
            SELECT toStartOfInterval(event_time, toIntervalSecond({{bucket_s:UInt32}})) AS bucket,
                   model_name, model_version, count() AS outcomes,
                   round(avg(correct), 4) AS accuracy, round(avg(log_loss), 4) AS log_loss
            FROM outcomes FINAL
            WHERE NOT shadow AND {WHERE}
            GROUP BY bucket, model_name, model_version
            ORDER BY bucket, model_name, model_version
            """,
        ),
        Query(
            "timeline",
            "drift events, retrain requests and every version status (promotion, rejection, rollback) in time order",
            f"""
            SELECT event_time, model_name, event, version, detail FROM (
                SELECT event_time, model_name, concat(kind, ' drift') AS event, toString(model_version) AS version,
                       concat(detector, if(isNull(feature), '', concat(' on ', feature))) AS detail
                FROM drift_events FINAL WHERE {WHERE}
                UNION ALL
                SELECT event_time, model_name, 'retrain request', '', concat(requested_by, ': ', reason)
                FROM retrain_requests FINAL WHERE {WHERE}
                UNION ALL
                SELECT event_time, model_name,
                       concat('version ', status, if(status = 'canary', concat(' at ', toString(round(traffic * 100, 1)), '%'), '')),
                       toString(version), reason
                FROM model_versions FINAL WHERE {WHERE}
            )
            ORDER BY event_time, event
            """,
        ),
        Query(
            "latency",
            "event time to prediction, in milliseconds, by model version: percentiles, queue wait, model time",
            f"""
            SELECT model_name, model_version, count() AS predictions,
                   round(quantile(0.5)(dateDiff('millisecond', event_time, prediction_time)), 1) AS p50_ms,
                   round(quantile(0.95)(dateDiff('millisecond', event_time, prediction_time)), 1) AS p95_ms,
                   round(quantile(0.99)(dateDiff('millisecond', event_time, prediction_time)), 1) AS p99_ms,
                   round(avg(queue_wait_ms), 2) AS queue_wait_ms, round(avg(inference_ms), 3) AS batch_model_ms
            FROM predictions FINAL
            WHERE NOT shadow AND {WHERE}
            GROUP BY model_name, model_version
            ORDER BY model_name, model_version
            """,
        ),
        Query(
            "dead-letters",
            "dead letters by agent, reason and source topic",
            """
            SELECT agent, reason, source_topic, count() AS letters, min(event_time) AS first, max(event_time) AS last
            FROM dead_letters FINAL
            WHERE event_time >= {since:DateTime64(3, 'UTC')}
            GROUP BY agent, reason, source_topic
            ORDER BY letters DESC, agent, reason
            """,
        ),
        Query(
            "ab",
            "A/B report per arm (version, served or shadow): outcomes, accuracy and log loss with 95% intervals, "
            "the accuracy difference to the served arm with the most outcomes and its p-value (paired on the "
            "events both scored, as a shadow's; else arm against arm, as a canary's), latency",
            f"""
            WITH
                scored AS (
                    SELECT model_name, model_version, shadow, event_id, correct, log_loss
                    FROM outcomes FINAL WHERE {WHERE}),
                arms AS (
                    SELECT model_name, model_version, shadow, count() AS n, avg(correct) AS acc,
                           avg(log_loss) AS ll, stddevSamp(log_loss) AS ll_sd
                    FROM scored GROUP BY model_name, model_version, shadow),
                reference AS (
                    SELECT model_name, argMax(model_version, n) AS ref_version, argMax(acc, n) AS ref_acc,
                           max(n) AS ref_n
                    FROM arms WHERE NOT shadow GROUP BY model_name),
                paired AS (
                    SELECT a.model_name AS model_name, a.model_version AS model_version, a.shadow AS shadow,
                           count() AS pairs, avg(toFloat64(a.correct) - toFloat64(b.correct)) AS diff,
                           stddevSamp(toFloat64(a.correct) - toFloat64(b.correct)) AS diff_sd
                    FROM scored AS a
                    INNER JOIN (SELECT s.model_name AS model_name, s.event_id AS event_id, s.correct AS correct
                                FROM scored AS s INNER JOIN reference AS r ON s.model_name = r.model_name
                                WHERE NOT s.shadow AND s.model_version = r.ref_version) AS b
                        ON a.model_name = b.model_name AND a.event_id = b.event_id
                    GROUP BY model_name, model_version, shadow),
                latency AS (
                    SELECT model_name, model_version, shadow,
                           quantile(0.5)(dateDiff('millisecond', event_time, prediction_time)) AS p50,
                           quantile(0.99)(dateDiff('millisecond', event_time, prediction_time)) AS p99
                    FROM predictions FINAL WHERE {WHERE}
                    GROUP BY model_name, model_version, shadow),
                compared AS (
                    SELECT arms.model_name AS model_name, arms.model_version AS model_version, arms.shadow AS shadow,
                           arms.n AS n, arms.acc AS acc, arms.ll AS ll, arms.ll_sd AS ll_sd,
                           reference.ref_version AS ref_version, reference.ref_n AS ref_n, paired.pairs AS pairs,
                           if(paired.pairs > 1, paired.diff, arms.acc - reference.ref_acc) AS difference,
                           if(paired.pairs > 1, paired.diff_sd / sqrt(paired.pairs),
                              sqrt(arms.acc * (1 - arms.acc) / arms.n
                                   + reference.ref_acc * (1 - reference.ref_acc) / reference.ref_n)) AS difference_se
                    FROM arms
                    LEFT JOIN reference ON arms.model_name = reference.model_name
                    LEFT JOIN paired ON arms.model_name = paired.model_name
                        AND arms.model_version = paired.model_version AND arms.shadow = paired.shadow)
            SELECT c.model_name AS model_name, c.model_version AS model_version,
                   if(c.shadow, 'shadow', 'served') AS arm, c.n AS outcomes,
                   round(c.acc, 4) AS accuracy,
                   round(greatest(0, c.acc - 1.96 * sqrt(c.acc * (1 - c.acc) / c.n)), 4) AS accuracy_low,
                   round(least(1, c.acc + 1.96 * sqrt(c.acc * (1 - c.acc) / c.n)), 4) AS accuracy_high,
                   round(c.ll, 4) AS log_loss, round(1.96 * c.ll_sd / sqrt(c.n), 4) AS log_loss_pm,
                   (c.model_version = c.ref_version AND NOT c.shadow) OR c.ref_n = 0 AS reference_arm,
                   if(reference_arm, NULL, round(c.difference, 4)) AS difference,
                   if(reference_arm, NULL, if(c.pairs > 1, 'paired', 'arms')) AS compared,
                   if(reference_arm, NULL, round(if(c.difference_se > 0, erfc(abs(c.difference / c.difference_se)
                      / sqrt(2)), if(c.difference = 0, 1, 0)), 4)) AS p_value,
                   if(l.model_name = '', NULL, l.p50) AS p50_ms, if(l.model_name = '', NULL, l.p99) AS p99_ms
            FROM compared AS c
            LEFT JOIN latency AS l ON c.model_name = l.model_name AND c.model_version = l.model_version
                AND c.shadow = l.shadow
            ORDER BY model_name, arm, model_version
            """,
        ),
        Query(
            "labels",
            "label coverage (served predictions that got a label) and label delay by model version",
            f"""
            SELECT model_name, model_version, predictions, outcomes, round(outcomes / predictions, 4) AS coverage,
                   p50_label_delay_s, p95_label_delay_s
            FROM (
                SELECT model_name, model_version, count() AS predictions
                FROM predictions FINAL WHERE NOT shadow AND {WHERE} GROUP BY model_name, model_version
            ) AS p
            LEFT JOIN (
                SELECT model_name, model_version, count() AS outcomes,
                       round(quantile(0.5)(label_delay_ms) / 1000, 1) AS p50_label_delay_s,
                       round(quantile(0.95)(label_delay_ms) / 1000, 1) AS p95_label_delay_s
                FROM outcomes FINAL WHERE NOT shadow AND {WHERE} GROUP BY model_name, model_version
            ) AS o USING (model_name, model_version)
            ORDER BY model_name, model_version
            """,
        ),
    ]
}
