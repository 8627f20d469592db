-- Every prediction, served and shadow. A re-delivered prediction has the same sorting key and is
-- collapsed by ReplacingMergeTree; query with FINAL (or GROUP BY event_id) for exact counts.
CREATE TABLE IF NOT EXISTS predictions
(
    event_id        String,
    event_time      DateTime64(3, 'UTC'),
    prediction_time DateTime64(3, 'UTC'),
    entity_id       String,
    model_name      LowCardinality(String),
    model_version   UInt32,
    shadow          Bool,
    scores          Array(Float32),
    predicted_class LowCardinality(String),
    queue_wait_ms   Float32,
    inference_ms    Float32
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(event_time)
ORDER BY (model_name, model_version, shadow, event_time, event_id)
