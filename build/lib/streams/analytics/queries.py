"""The canned analytics queries of ``loopline query``. Values are bound as query parameters, never pasted."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULTS", "QUERIES", "Query"]

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
