-- The response cache: a hit costs nothing (cost_micro_usd 0) and records what the call would have cost
-- as saved; the rollups count hits and sum the savings, so the cost page can show what the cache saved.
ALTER TABLE requests ADD COLUMN IF NOT EXISTS cost_saved_micro_usd Int64 DEFAULT 0;
ALTER TABLE requests_hourly ADD COLUMN IF NOT EXISTS cache_hits SimpleAggregateFunction(sum, UInt64) DEFAULT 0;
ALTER TABLE requests_hourly ADD COLUMN IF NOT EXISTS saved_micro_usd SimpleAggregateFunction(sum, Int64) DEFAULT 0;
ALTER TABLE requests_hourly_team ADD COLUMN IF NOT EXISTS cache_hits SimpleAggregateFunction(sum, UInt64) DEFAULT 0;
ALTER TABLE requests_hourly_team ADD COLUMN IF NOT EXISTS saved_micro_usd SimpleAggregateFunction(sum, Int64) DEFAULT 0;

-- MODIFY QUERY swaps a view's query in place (views with a TO table), so no insert goes uncounted.
ALTER TABLE requests_hourly_mv MODIFY QUERY
SELECT tenant, toStartOfHour(ts) AS hour, team, model, project, api_key_id, upstream,
    count() AS requests, countIf(status >= 400) AS errors, countIf(refusal) AS refusals,
    sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
    sum(ifNull(cost_micro_usd, 0)) AS spend_micro_usd, countIf(cost_micro_usd IS NULL AND status < 400) AS unpriced,
    countIf(self_hosted AND cost_micro_usd = 0 AND status < 400) AS self_hosted_free,
    countIf(cache_hit) AS cache_hits, sum(cost_saved_micro_usd) AS saved_micro_usd,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_ms) AS latency,
    quantilesTDigestState(0.5, 0.95, 0.99)(ttft_ms) AS ttft,
    quantilesTDigestState(0.5, 0.95, 0.99)(overhead_ms) AS overhead,
    quantilesTDigestState(0.5, 0.95, 0.99)(upstream_ms) AS upstream_time,
    quantilesTDigestState(0.5, 0.9)(tokens_per_second) AS speed
FROM (SELECT *, if(status = 200 AND completion_tokens > 0,
        toFloat32(completion_tokens / greatest((latency_ms - ifNull(ttft_ms, 0)) / 1000, 0.001)), NULL)
        AS tokens_per_second FROM requests)
GROUP BY tenant, hour, team, model, project, api_key_id, upstream;

ALTER TABLE requests_hourly_team_mv MODIFY QUERY
SELECT tenant, hour, team, model, upstream,
    sum(requests) AS requests, sum(errors) AS errors, sum(refusals) AS refusals,
    sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
    sum(spend_micro_usd) AS spend_micro_usd, sum(unpriced) AS unpriced, sum(self_hosted_free) AS self_hosted_free,
    sum(cache_hits) AS cache_hits, sum(saved_micro_usd) AS saved_micro_usd,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency) AS latency,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(ttft) AS ttft,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(overhead) AS overhead,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(upstream_time) AS upstream_time,
    quantilesTDigestMergeState(0.5, 0.9)(speed) AS speed
FROM requests_hourly
GROUP BY tenant, hour, team, model, upstream;
