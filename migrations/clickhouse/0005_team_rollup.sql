-- A coarser rollup without key and project: an order of magnitude fewer rows to merge when a page
-- is not filtered by key or project (most views), which keeps 10^7-row tenants under a second.
CREATE TABLE IF NOT EXISTS requests_hourly_team
(
    tenant            LowCardinality(String),
    hour              DateTime('UTC'),
    team              LowCardinality(String),
    model             LowCardinality(String),
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
    speed             AggregateFunction(quantilesTDigest(0.5, 0.9), Nullable(Float32))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant, hour, team, model, upstream);

CREATE MATERIALIZED VIEW IF NOT EXISTS requests_hourly_team_mv TO requests_hourly_team AS
SELECT tenant, hour, team, model, upstream,
    sum(requests) AS requests, sum(errors) AS errors, sum(refusals) AS refusals,
    sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
    sum(spend_micro_usd) AS spend_micro_usd, sum(unpriced) AS unpriced,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency) AS latency,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(ttft) AS ttft,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(overhead) AS overhead,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(upstream_time) AS upstream_time,
    quantilesTDigestMergeState(0.5, 0.9)(speed) AS speed
FROM requests_hourly
GROUP BY tenant, hour, team, model, upstream;

INSERT INTO requests_hourly_team
SELECT tenant, hour, team, model, upstream, sum(requests), sum(errors), sum(refusals), sum(prompt_tokens),
    sum(completion_tokens), sum(spend_micro_usd), sum(unpriced),
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency), quantilesTDigestMergeState(0.5, 0.95, 0.99)(ttft),
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(overhead), quantilesTDigestMergeState(0.5, 0.95, 0.99)(upstream_time),
    quantilesTDigestMergeState(0.5, 0.9)(speed)
FROM requests_hourly
GROUP BY tenant, hour, team, model, upstream;
