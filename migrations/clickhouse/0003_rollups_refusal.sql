-- Behaviour: a cheap refusal detector runs on the answer at log time; only its verdict is stored.
ALTER TABLE requests ADD COLUMN IF NOT EXISTS refusal Bool DEFAULT false;

-- Hourly rollups keep dashboards fast at 10^7+ rows: counts and sums, plus t-digest quantile states
-- that merge across hours, teams and models. Rows that a crash replayed twice are counted twice here
-- (the raw table collapses them); that is rare and bounded by one spool segment.
CREATE TABLE IF NOT EXISTS requests_hourly
(
    tenant            LowCardinality(String),
    hour              DateTime('UTC'),
    team              LowCardinality(String),
    model             LowCardinality(String),
    project           LowCardinality(String),
    api_key_id        String,
    upstream          LowCardinality(String),
    requests          SimpleAggregateFunction(sum, UInt64),
    errors            SimpleAggregateFunction(sum, UInt64),
    refusals          SimpleAggregateFunction(sum, UInt64),
    prompt_tokens     SimpleAggregateFunction(sum, UInt64),
    completion_tokens SimpleAggregateFunction(sum, UInt64),
    spend_micro_usd   SimpleAggregateFunction(sum, Int64),
    unpriced          SimpleAggregateFunction(sum, UInt64),
    latency           AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float32),
    ttft              AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Nullable(Float32)),
    overhead          AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float32),
    upstream_time     AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float32),
    -- completion tokens per second after the first token; NULL (skipped) for errors and empty answers
    speed             AggregateFunction(quantilesTDigest(0.5, 0.9), Nullable(Float32))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant, hour, team, model, project, api_key_id, upstream);

CREATE MATERIALIZED VIEW IF NOT EXISTS requests_hourly_mv TO requests_hourly AS
SELECT tenant, toStartOfHour(ts) AS hour, team, model, project, api_key_id, upstream,
    count() AS requests, countIf(status >= 400) AS errors, countIf(refusal) AS refusals,
    sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
    sum(ifNull(cost_micro_usd, 0)) AS spend_micro_usd, countIf(cost_micro_usd IS NULL AND status < 400) AS unpriced,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_ms) AS latency,
    quantilesTDigestState(0.5, 0.95, 0.99)(ttft_ms) AS ttft,
    quantilesTDigestState(0.5, 0.95, 0.99)(overhead_ms) AS overhead,
    quantilesTDigestState(0.5, 0.95, 0.99)(upstream_ms) AS upstream_time,
    quantilesTDigestState(0.5, 0.9)(tokens_per_second) AS speed
FROM (SELECT *, if(status = 200 AND completion_tokens > 0,
        toFloat32(completion_tokens / greatest((latency_ms - ifNull(ttft_ms, 0)) / 1000, 0.001)), NULL)
        AS tokens_per_second FROM requests)
GROUP BY tenant, hour, team, model, project, api_key_id, upstream;

INSERT INTO requests_hourly
SELECT tenant, toStartOfHour(ts) AS hour, team, model, project, api_key_id, upstream,
    count(), countIf(status >= 400), countIf(refusal), sum(prompt_tokens), sum(completion_tokens),
    sum(ifNull(cost_micro_usd, 0)), countIf(cost_micro_usd IS NULL AND status < 400),
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_ms), quantilesTDigestState(0.5, 0.95, 0.99)(ttft_ms),
    quantilesTDigestState(0.5, 0.95, 0.99)(overhead_ms), quantilesTDigestState(0.5, 0.95, 0.99)(upstream_ms),
    quantilesTDigestState(0.5, 0.9)(tokens_per_second)
FROM (SELECT *, if(status = 200 AND completion_tokens > 0,
        toFloat32(completion_tokens / greatest((latency_ms - ifNull(ttft_ms, 0)) / 1000, 0.001)), NULL)
        AS tokens_per_second FROM requests)
GROUP BY tenant, hour, team, model, project, api_key_id, upstream;
