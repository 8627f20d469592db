-- event_id and event_time of a dead letter derive from its source record (topic/partition/offset
-- and the record's timestamp), so a re-delivered dead letter collapses onto the first.
CREATE TABLE IF NOT EXISTS dead_letters
(
    event_id         String,
    event_time       DateTime64(3, 'UTC'),
    agent            LowCardinality(String),
    reason           LowCardinality(String),
    error            String,
    source_topic     LowCardinality(String),
    source_partition Int32,
    source_offset    Int64,
    key              Nullable(String),
    value            Nullable(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(event_time)
ORDER BY (source_topic, reason, event_time, event_id)
