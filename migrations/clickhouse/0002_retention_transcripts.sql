-- Retention and erasure: each row carries its retention_days (0 = keep) and, when the request named
-- an end user, an HMAC of that id (never the id itself). The partition key changes, so the table is
-- rebuilt. Insert deduplication makes a replayed spool batch with the same token a no-op.
CREATE TABLE IF NOT EXISTS requests_v2
(
    tenant            LowCardinality(String),
    team              LowCardinality(String),
    project           LowCardinality(String),
    api_key_id        String,
    request_id        UUID,
    ts                DateTime64(3, 'UTC'),
    route             LowCardinality(String),
    model             LowCardinality(String),
    upstream          LowCardinality(String),
    status            UInt16,
    error_class       LowCardinality(String),
    streamed          Bool,
    cache_hit         Bool,
    latency_ms        Float32,
    ttft_ms           Nullable(Float32),
    upstream_ms       Float32,
    overhead_ms       Float32,
    prompt_tokens     UInt32,
    completion_tokens UInt32,
    cached_tokens     UInt32,
    cost_micro_usd    Nullable(Int64),
    finish_reason     LowCardinality(String),
    choices           UInt16,
    subject_hash      String DEFAULT '',
    retention_days    UInt16 DEFAULT 0
)
ENGINE = ReplacingMergeTree
PARTITION BY (retention_days, toYYYYMM(ts))
ORDER BY (tenant, team, toStartOfHour(ts), model, request_id)
TTL toDateTime(ts) + toIntervalDay(if(retention_days = 0, 36500, retention_days))
SETTINGS non_replicated_deduplication_window = 10000;

INSERT INTO requests_v2 (tenant, team, project, api_key_id, request_id, ts, route, model, upstream, status,
    error_class, streamed, cache_hit, latency_ms, ttft_ms, upstream_ms, overhead_ms, prompt_tokens,
    completion_tokens, cached_tokens, cost_micro_usd, finish_reason, choices)
SELECT tenant, team, project, api_key_id, request_id, ts, route, model, upstream, status, error_class, streamed,
    cache_hit, latency_ms, ttft_ms, upstream_ms, overhead_ms, prompt_tokens, completion_tokens, cached_tokens,
    cost_micro_usd, finish_reason, choices
FROM requests;

RENAME TABLE requests TO requests_before_0002, requests_v2 TO requests;

DROP TABLE requests_before_0002;

-- Transcripts: ciphertext only (compressed before encryption, so stored without a codec). The key id
-- names the wrapped data key; AAD binds tenant, request_id and ts.
CREATE TABLE IF NOT EXISTS transcripts
(
    tenant         LowCardinality(String),
    team           LowCardinality(String),
    request_id     UUID,
    ts             DateTime64(3, 'UTC'),
    subject_hash   String,
    key_id         String,
    nonce          String CODEC(NONE),
    ciphertext     String CODEC(NONE),
    retention_days UInt16
)
ENGINE = ReplacingMergeTree
PARTITION BY (retention_days, toYYYYMM(ts))
ORDER BY (tenant, request_id)
TTL toDateTime(ts) + toIntervalDay(if(retention_days = 0, 36500, retention_days))
SETTINGS non_replicated_deduplication_window = 10000;
