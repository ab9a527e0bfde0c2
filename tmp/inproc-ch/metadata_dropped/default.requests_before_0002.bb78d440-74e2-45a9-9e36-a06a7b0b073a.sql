ATTACH TABLE _ UUID 'bb78d440-74e2-45a9-9e36-a06a7b0b073a'
(
    `tenant` LowCardinality(String),
    `team` LowCardinality(String),
    `project` LowCardinality(String),
    `api_key_id` String,
    `request_id` UUID,
    `ts` DateTime64(3, 'UTC'),
    `route` LowCardinality(String),
    `model` LowCardinality(String),
    `upstream` LowCardinality(String),
    `status` UInt16,
    `error_class` LowCardinality(String),
    `streamed` Bool,
    `cache_hit` Bool,
    `latency_ms` Float32,
    `ttft_ms` Nullable(Float32),
    `upstream_ms` Float32,
    `overhead_ms` Float32,
    `prompt_tokens` UInt32,
    `completion_tokens` UInt32,
    `cached_tokens` UInt32,
    `cost_micro_usd` Nullable(Int64),
    `finish_reason` LowCardinality(String),
    `choices` UInt16
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, team, toStartOfHour(ts), model, request_id)
SETTINGS index_granularity = 8192
