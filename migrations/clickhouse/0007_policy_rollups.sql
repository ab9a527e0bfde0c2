-- Policy rollups for the behaviour page: decisions and findings per hour, so the page stays under a
-- second at 10^7 rows instead of unnesting every row's finding arrays. Counts only, like the rows.
CREATE TABLE IF NOT EXISTS policy_hourly
(
    tenant         LowCardinality(String),
    hour           DateTime('UTC'),
    team           LowCardinality(String),
    model          LowCardinality(String),
    project        LowCardinality(String),
    api_key_id     String,
    decision       LowCardinality(String),
    requests       UInt64,
    pii_requests   UInt64,
    toxic_requests UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant, hour, team, model, project, api_key_id, decision);

CREATE MATERIALIZED VIEW IF NOT EXISTS policy_hourly_mv TO policy_hourly AS
SELECT tenant, toStartOfHour(ts) AS hour, team, model, project, api_key_id, decision,
    count() AS requests,
    -- PII kinds are presidio entity names: the only kinds without a "scanner:" prefix besides these two
    countIf(arrayExists((k, st) -> st = 'input' AND position(k, ':') = 0 AND k NOT IN ('term', 'model_not_allowed'),
        finding_kind, finding_stage)) AS pii_requests,
    countIf(arrayExists(k -> startsWith(k, 'toxicity:'), finding_kind)) AS toxic_requests
FROM requests
GROUP BY tenant, hour, team, model, project, api_key_id, decision;

INSERT INTO policy_hourly
SELECT tenant, toStartOfHour(ts) AS hour, team, model, project, api_key_id, decision, count(),
    countIf(arrayExists((k, st) -> st = 'input' AND position(k, ':') = 0 AND k NOT IN ('term', 'model_not_allowed'),
        finding_kind, finding_stage)),
    countIf(arrayExists(k -> startsWith(k, 'toxicity:'), finding_kind))
FROM requests
GROUP BY tenant, hour, team, model, project, api_key_id, decision;

CREATE TABLE IF NOT EXISTS findings_hourly
(
    tenant     LowCardinality(String),
    hour       DateTime('UTC'),
    team       LowCardinality(String),
    model      LowCardinality(String),
    project    LowCardinality(String),
    api_key_id String,
    stage      LowCardinality(String),
    kind       LowCardinality(String),
    action     LowCardinality(String),
    findings   UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant, hour, team, model, project, api_key_id, stage, kind, action);

CREATE MATERIALIZED VIEW IF NOT EXISTS findings_hourly_mv TO findings_hourly AS
SELECT tenant, toStartOfHour(ts) AS hour, team, model, project, api_key_id, f_stage AS stage, f_kind AS kind,
    f_action AS action, sum(f_count) AS findings
FROM requests
ARRAY JOIN finding_stage AS f_stage, finding_kind AS f_kind, finding_action AS f_action, finding_count AS f_count
GROUP BY tenant, hour, team, model, project, api_key_id, f_stage, f_kind, f_action;

INSERT INTO findings_hourly
SELECT tenant, toStartOfHour(ts) AS hour, team, model, project, api_key_id, f_stage, f_kind, f_action, sum(f_count)
FROM requests
ARRAY JOIN finding_stage AS f_stage, finding_kind AS f_kind, finding_action AS f_action, finding_count AS f_count
GROUP BY tenant, hour, team, model, project, api_key_id, f_stage, f_kind, f_action;
