-- One row per published status of a version: the history of promotions, rejections and rollbacks.
-- Artifacts stay in Kafka (or the artifact directory); only their sha256 and URI are kept here.
CREATE TABLE IF NOT EXISTS model_versions
(
    event_id        String,
    event_time      DateTime64(3, 'UTC'),
    model_name      LowCardinality(String),
    version         UInt32,
    status          LowCardinality(String),
    reason          String,
    created_time    DateTime64(3, 'UTC'),
    artifact_format LowCardinality(String),
    artifact_uri    Nullable(String),
    sha256          String,
    feature_names   Array(String),
    classes         Array(String),
    metrics         Map(String, Float64),
    parent_version  Nullable(UInt32),
    lineage         String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(event_time)
ORDER BY (model_name, version, event_time, event_id)
