-- One immutable row per exchange. No prompt or response text, nor anything derived from it beyond
-- numbers and categories (transcripts arrive encrypted in their own table).
-- ReplacingMergeTree on request_id makes a replayed batch harmless: duplicates collapse on merge,
-- and queries that must be exact use FINAL or count(DISTINCT request_id).
CREATE TABLE IF NOT EXISTS requests
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
    choices           UInt16
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, team, toStartOfHour(ts), model, request_id);
