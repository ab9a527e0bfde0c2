-- Feedback on requests: a score and/or a label from an end user, a reviewer or an evaluator. The
-- comment is free text, so it is sealed like a transcript (key id, nonce, ciphertext; AAD binds
-- tenant, feedback_id and ts) and never stored in clear. Retention follows the scored request's row.
-- "Keep" (0 days) is 50 years: 100 would overflow DateTime and expire the row at once (see 0004).
CREATE TABLE IF NOT EXISTS feedback
(
    tenant         LowCardinality(String),
    team           LowCardinality(String),
    feedback_id    UUID,
    request_id     UUID,
    ts             DateTime64(3, 'UTC'),
    score          Nullable(Float64),
    label          LowCardinality(String),
    source         LowCardinality(String),
    actor          String,
    subject_hash   String,
    key_id         String,
    nonce          String CODEC(NONE),
    ciphertext     String CODEC(NONE),
    retention_days UInt16
)
ENGINE = ReplacingMergeTree
PARTITION BY (retention_days, toYYYYMM(ts))
ORDER BY (tenant, request_id, feedback_id)
TTL toDateTime(ts) + toIntervalDay(if(retention_days = 0, 18250, retention_days))
SETTINGS non_replicated_deduplication_window = 10000;
