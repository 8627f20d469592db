"""The canned analytics queries of ``loopline query``, and the rules every query obeys.

Values are bound as query parameters, never pasted. A query runs as one statement with ClickHouse's
``readonly`` setting, whichever way it reaches the store (:func:`one_statement`, :data:`READ_ONLY`):
``loopline query --sql`` reads the tables, it can't change or drop them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULTS", "QUERIES", "READ_ONLY", "Query", "QueryError", "one_statement"]

READ_ONLY = {"readonly": 1}
"""ClickHouse settings of every analytics query: reads only, and no setting (readonly included) may be changed."""


class QueryError(RuntimeError):
    """The query was refused, by the rules here or by the database; the message says why."""


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
                SELECT event_time, model_name, concat('version ', status), toString(version), reason
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
