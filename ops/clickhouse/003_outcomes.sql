CREATE TABLE IF NOT EXISTS outcomes
(
    event_id            String,
    event_time          DateTime64(3, 'UTC'),
    entity_id           String,
    values              Array(Float32),
    model_name          LowCardinality(String),
    model_version       UInt32,
    shadow              Bool,
    scores              Array(Float32),
    predicted_class     LowCardinality(String),
    label               LowCardinality(String),
    label_time          DateTime64(3, 'UTC'),
    prediction_delay_ms Int64,
    label_delay_ms      Int64,
    correct             Bool,
    log_loss            Float32,
    label_rate          Float32
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(event_time)
ORDER BY (model_name, model_version, shadow, event_time, event_id)
