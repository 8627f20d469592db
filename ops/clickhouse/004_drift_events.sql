CREATE TABLE IF NOT EXISTS drift_events
(
    event_id      String,
    event_time    DateTime64(3, 'UTC'),
    model_name    LowCardinality(String),
    model_version UInt32,
    kind          LowCardinality(String),
    detector      LowCardinality(String),
    feature       Nullable(String),
    statistics    Map(String, Float64),
    window_start  DateTime64(3, 'UTC'),
    window_end    DateTime64(3, 'UTC'),
    samples       Int64,
    offsets       Array(Tuple(topic String, partition Int32, start Int64, end Int64))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(event_time)
ORDER BY (model_name, model_version, event_time, event_id)
