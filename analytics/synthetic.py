"""Synthetic request rows for demos, tests and the dashboard benchmark, generated inside ClickHouse.

Realistic enough to exercise every page: four teams, four models (one without a price), 40 keys,
2% upstream errors, 1% prompts blocked by policy and 10% with a masked e-mail address, a third streamed, 5% truncated; from `drift_at` (a fraction of the rows) on,
gpt-4o gets 60% slower and claude-x refuses four times as often, so the drift page has something
to find.

Deterministic: every pseudo-random draw is a hash of the seed, the row number and the draw's own key
(`cityHash64(seed, number, k)`), so the same call always writes the same rows. ClickHouse's `rand(k)`
cannot be seeded (its argument only keeps calls apart), and a dashboard test on such data failed now
and then on an unlucky draw. Request ids hash the whole call (seed, tenant, start, row count) with the
row number, so two calls never write the same id: `requests` keeps one row of rows with equal keys.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

TEAMS = ("alpha", "beta", "gamma", "delta")
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-x", "local")


def generate(
    client: Any,
    rows: int,
    since: datetime,
    until: datetime,
    *,
    tenant: str = "default",
    drift_at: float = 0.5,
    seed: int = 0,
) -> None:
    """Insert `rows` rows spread evenly between `since` and `until` (the MV fills the rollups); the
    same arguments always give the same rows, another `seed` other draws."""
    span_ms = int((until - since).total_seconds() * 1000)
    client.command(
        """
        INSERT INTO requests (tenant, team, project, api_key_id, request_id, ts, route, model, upstream, status,
            error_class, streamed, cache_hit, latency_ms, ttft_ms, upstream_ms, overhead_ms, prompt_tokens,
            completion_tokens, cached_tokens, cost_micro_usd, finish_reason, choices, subject_hash,
            retention_days, refusal, policy, decision, finding_stage, finding_kind, finding_action,
            finding_count, finding_score)
        WITH arrayMap(k -> cityHash64({seed:UInt64}, number, k), range(1, 13)) AS draw
        SELECT {tenant:String}, ['alpha', 'beta', 'gamma', 'delta'][1 + number % 4] AS team_, 'default',
            concat('key_', toString(number % 40)),
            reinterpretAsUUID(sipHash128({seed:UInt64}, {tenant:String}, {since:DateTime64(3, 'UTC')}, {rows:UInt64}, number)),
            toDateTime64({since:DateTime64(3, 'UTC')}, 3, 'UTC')
                + toIntervalMillisecond(intDiv(number * {span:UInt64}, {rows:UInt64})),
            'chat.completions', ['gpt-4o-mini', 'gpt-4o', 'claude-x', 'local'][1 + intDiv(number, 4) % 4] AS model_,
            if(model_ = 'local', 'onnx', 'openai'),
            if(draw[11] % 100 < 1, 400, if(draw[1] % 100 < 2, 502, 200)) AS status_,
            multiIf(status_ = 502, 'upstream_error', status_ = 400, 'content_policy_violation', ''),
            draw[2] % 3 = 0 AS streamed_, false,
            toFloat32((150 + draw[3] % 900 + (draw[9] % 1000) * (draw[10] % 2))
                * if(model_ = 'gpt-4o' AND number >= {drift_row:UInt64}, 1.6, 1.0)) AS latency_,
            if(streamed_, latency_ * 0.3, NULL), latency_ - 1, toFloat32(0.4 + (draw[4] % 100) / 100),
            30 + draw[5] % 600 AS prompt_, 10 + draw[6] % 500 AS completion_, 0,
            if(model_ = 'local', NULL, toInt64(prompt_ * if(model_ = 'gpt-4o', 2.5, 0.15)
                + completion_ * if(model_ = 'gpt-4o', 10, 0.6))),
            if(draw[7] % 20 = 0, 'length', 'stop'), 1, '', 0,
            draw[8] % 100 < if(model_ = 'claude-x' AND number >= {drift_row:UInt64}, 8, 2),
            'default@1', multiIf(status_ = 400, 'block', draw[12] % 100 < 10, 'mask', 'allow') AS decision_,
            if(decision_ = 'allow', [], ['input']),
            multiIf(decision_ = 'block', ['secret:openai_key'], decision_ = 'mask', ['EMAIL_ADDRESS'], []),
            if(decision_ = 'allow', [], [decision_]), if(decision_ = 'allow', [], [1]),
            if(decision_ = 'allow', [], [1.0])
        FROM numbers({rows:UInt64})
        """,
        parameters={
            "seed": seed,
            "tenant": tenant,
            "since": since,
            "span": span_ms,
            "rows": rows,
            "drift_row": int(rows * drift_at),
        },
        settings={"max_insert_block_size": 1_000_000},
    )
