-- Self-hosted models (`upstreams[].self_hosted`, every `type: onnx` by default) cost nothing per token
-- unless `prices` names them: their rows carry cost 0, known, and `self_hosted`, and the rollups count
-- those answered at no cost, so the overview can say why the spend is $0 instead of "unknown price".
-- Rows written before this migration keep their NULL cost.
ALTER TABLE requests ADD COLUMN IF NOT EXISTS self_hosted Bool DEFAULT false;
ALTER TABLE requests_hourly ADD COLUMN IF NOT EXISTS self_hosted_free SimpleAggregateFunction(sum, UInt64) DEFAULT 0;
ALTER TABLE requests_hourly_team ADD COLUMN IF NOT EXISTS self_hosted_free SimpleAggregateFunction(sum, UInt64) DEFAULT 0;

-- MODIFY QUERY swaps a view's query in place (views with a TO table), so no insert goes uncounted.
ALTER TABLE requests_hourly_mv MODIFY QUERY
SELECT tenant, toStartOfHour(ts) AS hour, team, model, project, api_key_id, upstream,
    count() AS requests, countIf(status >= 400) AS errors, countIf(refusal) AS refusals,
    sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
    sum(ifNull(cost_micro_usd, 0)) AS spend_micro_usd, countIf(cost_micro_usd IS NULL AND status < 400) AS unpriced,
    countIf(self_hosted AND cost_micro_usd = 0 AND status < 400) AS self_hosted_free,
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
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency) AS latency,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(ttft) AS ttft,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(overhead) AS overhead,
    quantilesTDigestMergeState(0.5, 0.95, 0.99)(upstream_time) AS upstream_time,
    quantilesTDigestMergeState(0.5, 0.9)(speed) AS speed
FROM requests_hourly
GROUP BY tenant, hour, team, model, upstream;
