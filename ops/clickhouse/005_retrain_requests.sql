-- The evidence columns are NULL for requests made by hand.
CREATE TABLE IF NOT EXISTS retrain_requests
(
    event_id     String,
    event_time   DateTime64(3, 'UTC'),
    model_name   LowCardinality(String),
    reason       String,
    requested_by LowCardinality(String),
    kind         Nullable(String),
    detector     Nullable(String),
    feature      Nullable(String),
    statistics   Map(String, Float64),
    window_start Nullable(DateTime64(3, 'UTC')),
    window_end   Nullable(DateTime64(3, 'UTC')),
    samples      Nullable(Int64),
    offsets      Array(Tuple(topic String, partition Int32, start Int64, end Int64))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(event_time)
ORDER BY (model_name, event_time, event_id)
