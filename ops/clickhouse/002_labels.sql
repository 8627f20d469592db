CREATE TABLE IF NOT EXISTS labels
(
    event_id   String,
    event_time DateTime64(3, 'UTC'),
    label      LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(event_time)
ORDER BY (event_time, event_id)
