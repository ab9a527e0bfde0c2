"""Dashboard queries: every one takes the caller's Scope and Filters, aggregates in ClickHouse (hourly
rollups where they suffice, raw rows where a distribution is needed) and returns plain data."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, Literal

from analytics.access import Scope

MAX_RANGE = timedelta(days=400)
# The times a filter may name: ClickHouse's DateTime64 spans 1900-2299, and ranges and baselines are
# computed from them (a `until` in year 1 minus a day was an OverflowError, a 500, not a 400).
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)
PRESETS = {
    "1h": timedelta(hours=1),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,255}$")
MIN_SAMPLE = 100
DISTRIBUTION_ROWS = 150_000


class FilterError(ValueError):
    """A filter the caller must fix; `status` 400 (malformed) or 403 (outside the caller's scope)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Filters:
    since: datetime
    until: datetime
    teams: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def hours(self) -> float:
        return (self.until - self.since).total_seconds() / 3600


def parse_time(value: str, name: str, *, assume_utc: bool = True) -> datetime:
    """`value` as an aware time; one without an offset is UTC, or refused unless `assume_utc`.

    The one ISO 8601 reader of dashboards, admin API and CLI; `name` is the field the message names.
    """
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"{name} must be an ISO 8601 time such as 2026-11-01T00:00:00Z") from None
    if parsed.tzinfo is None:
        if not assume_utc:
            raise FilterError(f"{name} needs a timezone, e.g. 2026-11-01T00:00:00Z")
        parsed = parsed.replace(tzinfo=UTC)
    if not EARLIEST <= parsed <= LATEST:
        raise FilterError(f"{name} must be between {EARLIEST.year} and {LATEST.year}")
    return parsed


def check_range(since: datetime, until: datetime, what: str = "the time range") -> None:
    """Every range a query scans is bounded: the pages stay fast and one request cannot ask for years."""
    if until - since > MAX_RANGE:
        raise FilterError(f"{what} is limited to {MAX_RANGE.days} days")


def parse_filters(args: Mapping[str, Any], now: datetime | None = None) -> Filters:
    """Filters from query parameters: range (1h, 24h, 7d, 30d, 90d) or since/until, and lists of
    team, project, model and key (repeated or comma-separated)."""
    now = now or datetime.now(UTC)
    if args.get("since") or args.get("until"):
        until = parse_time(args["until"], "until") if args.get("until") else now
        since = parse_time(args["since"], "since") if args.get("since") else until - PRESETS["24h"]
    else:
        preset = args.get("range") or "24h"
        if preset not in PRESETS:
            raise FilterError(f"range must be one of {', '.join(PRESETS)}")
        until, since = now, now - PRESETS[preset]
    if since >= until:
        raise FilterError("since must be before until")
    check_range(since, until)

    def names(key: str) -> tuple[str, ...]:
        raw = args.getlist(key) if hasattr(args, "getlist") else [args.get(key) or ""]
        values = tuple(sorted({v.strip() for item in raw for v in str(item).split(",") if v.strip()}))
        for value in values:
            if not _NAME.match(value):
                raise FilterError(f"{key} {value!r} is not a valid name")
        if len(values) > 50:
            raise FilterError(f"at most 50 values for {key}")
        return values

    return Filters(since, until, names("team"), names("project"), names("model"), names("key"))


def condition(filters: Filters, scope: Scope, time_column: str = "ts") -> tuple[str, dict[str, Any]]:
    """The WHERE clause (all values bound as parameters) for a scope and filters."""
    teams = set(filters.teams)
    if scope.teams is not None:
        outside = teams - scope.teams
        if outside:
            raise FilterError(f"team {sorted(outside)[0]!r} is outside your scope", 403)
        teams = teams or set(scope.teams)
    parts = [
        "tenant = {tenant:String}",
        f"{time_column} >= {{since:DateTime64(3, 'UTC')}}",
        f"{time_column} < {{until:DateTime64(3, 'UTC')}}",
    ]
    params: dict[str, Any] = {"tenant": scope.tenant, "since": filters.since, "until": filters.until}
    for column, values, key in (
        ("team", sorted(teams), "teams"),
        ("project", filters.projects, "projects"),
        ("model", filters.models, "models"),
        ("api_key_id", filters.keys, "keys"),
    ):
        if values:
            parts.append(f"has({{{key}:Array(String)}}, {column})")
            params[key] = list(values)
    return " AND ".join(parts), params


def rollup(filters: Filters) -> str:
    """The smallest rollup that can answer: without key and project unless the filters need them."""
    return "requests_hourly" if filters.keys or filters.projects else "requests_hourly_team"


def bucket(filters: Filters) -> str:
    return "toStartOfHour(hour)" if filters.hours <= 24 * 8 else "toStartOfDay(hour)"


def _rows(client: Any, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    result = client.query(sql, parameters=params)
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def _q(values: Any) -> list[float | None]:
    return [
        None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 3)
        for v in (values or [])
    ]


# -- pages -------------------------------------------------------------------------------------


def overview(client: Any, filters: Filters, scope: Scope) -> dict[str, Any]:
    where, params = condition(filters, scope, "hour")
    table = rollup(filters)
    params["hour_since"] = filters.since
    totals = _rows(
        client,
        f"""
        SELECT sum(requests) AS requests, sum(errors) AS errors, sum(spend_micro_usd) AS spend_micro_usd,
               sum(unpriced) AS unpriced, sum(self_hosted_free) AS self_hosted_free,
               sum(prompt_tokens) AS prompt_tokens,
               sum(completion_tokens) AS completion_tokens, sum(refusals) AS refusals,
               quantilesTDigestMerge(0.5, 0.95, 0.99)(latency) AS latency_ms
        FROM {table} WHERE {where}""",
        params,
    )[0]
    requests = int(totals["requests"] or 0)
    top = {}
    for dim in ("model", "team"):
        top[dim] = _rows(
            client,
            f"""
            SELECT {dim} AS name, sum(requests) AS requests, sum(errors) AS errors,
                   sum(spend_micro_usd) AS spend_micro_usd
            FROM {table} WHERE {where} GROUP BY name ORDER BY requests DESC LIMIT 10""",
            params,
        )
    raw_where, raw_params = condition(filters, scope)
    errors = _rows(
        client,
        f"""
        SELECT error_class, status, count() AS requests FROM requests
        WHERE {raw_where} AND error_class != '' GROUP BY error_class, status ORDER BY requests DESC LIMIT 20""",
        raw_params,
    )
    return {
        "requests": requests,
        "errors": int(totals["errors"] or 0),
        "error_rate": (totals["errors"] / requests) if requests else None,
        "spend_usd": (totals["spend_micro_usd"] or 0) / 1e6,
        "unpriced_requests": int(totals["unpriced"] or 0),
        # Answered by self-hosted models at no per-token cost: part of why the spend is what it is.
        "self_hosted_requests": int(totals["self_hosted_free"] or 0),
        "tokens": {
            "prompt": int(totals["prompt_tokens"] or 0),
            "completion": int(totals["completion_tokens"] or 0),
        },
        "latency_ms": dict(zip(("p50", "p95", "p99"), _q(totals["latency_ms"]), strict=False))
        if requests
        else {},
        "top_models": top["model"],
        "top_teams": top["team"],
        "errors_by_class": errors,
    }


def latency(client: Any, filters: Filters, scope: Scope) -> dict[str, Any]:
    where, params = condition(filters, scope, "hour")
    table = rollup(filters)
    series = _rows(
        client,
        f"""
        SELECT {bucket(filters)} AS t, sum(requests) AS requests,
               quantilesTDigestMerge(0.5, 0.95, 0.99)(latency) AS latency_ms,
               quantilesTDigestMerge(0.5, 0.95, 0.99)(ttft) AS ttft_ms
        FROM {table} WHERE {where} GROUP BY t ORDER BY t""",
        params,
    )
    by_model = _rows(
        client,
        f"""
        SELECT model, upstream, sum(requests) AS requests,
               quantilesTDigestMerge(0.5, 0.95, 0.99)(latency) AS latency_ms,
               quantilesTDigestMerge(0.5, 0.95, 0.99)(overhead) AS overhead_ms,
               quantilesTDigestMerge(0.5, 0.95, 0.99)(upstream_time) AS upstream_ms
        FROM {table} WHERE {where} GROUP BY model, upstream ORDER BY requests DESC LIMIT 20""",
        params,
    )
    speed = _rows(
        client,
        f"""
        SELECT model, quantilesTDigestMerge(0.5, 0.9)(speed) AS tokens_per_second
        FROM {table} WHERE {where} GROUP BY model ORDER BY model""",
        params,
    )
    for row in series:
        row["latency_ms"], row["ttft_ms"] = _q(row["latency_ms"]), _q(row["ttft_ms"])
    for row in by_model:
        for key in ("latency_ms", "overhead_ms", "upstream_ms"):
            row[key] = _q(row[key])
    return {
        "series": series,
        "by_model": by_model,
        "tokens_per_second": {
            r["model"]: _q(r["tokens_per_second"])[0]
            for r in speed
            if _q(r["tokens_per_second"])[:1] != [None]
        },
    }


def cost(client: Any, filters: Filters, scope: Scope) -> dict[str, Any]:
    where, params = condition(filters, scope, "hour")
    table = rollup(filters)
    series = _rows(
        client,
        f"""
        SELECT {bucket(filters)} AS t, model, sum(spend_micro_usd) / 1e6 AS spend_usd, sum(unpriced) AS unpriced,
               sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens
        FROM {table} WHERE {where} GROUP BY t, model ORDER BY t, model""",
        params,
    )
    by = {}
    for dim, column in (("model", "model"), ("team", "team"), ("key", "api_key_id")):
        by[dim] = _rows(
            client,
            f"""
            SELECT {column} AS name, sum(spend_micro_usd) / 1e6 AS spend_usd, sum(unpriced) AS unpriced,
                   sum(self_hosted_free) AS self_hosted_free,
                   sum(cache_hits) AS cache_hits, sum(saved_micro_usd) / 1e6 AS saved_usd,
                   sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens
            FROM {"requests_hourly" if dim == "key" else table} WHERE {where}
            GROUP BY name ORDER BY spend_usd DESC LIMIT 15""",
            params,
        )
    total = sum(r["spend_usd"] for r in by["model"])
    days = filters.hours / 24
    return {
        "series": series,
        "by_model": by["model"],
        "by_team": by["team"],
        "by_key": by["key"],
        "total_usd": total,
        "unpriced_requests": sum(int(r["unpriced"]) for r in by["model"]),
        "self_hosted_requests": sum(int(r["self_hosted_free"]) for r in by["model"]),
        # Answered from the response cache: nothing spent, and what those calls would have cost.
        "cache_hits": sum(int(r["cache_hits"]) for r in by["model"]),
        "cache_saved_usd": sum(float(r["saved_usd"]) for r in by["model"]),
        "projected_month_usd": total / days * 30 if days >= 1 else None,
    }


def behaviour(client: Any, filters: Filters, scope: Scope) -> dict[str, Any]:
    where, params = condition(filters, scope)
    by_model = _rows(
        client,
        f"""
        SELECT model, count() AS requests, countIf(refusal) / count() AS refusal_rate,
               countIf(status >= 400) / count() AS error_rate,
               quantilesTDigest(0.5, 0.9)(completion_tokens) AS completion_tokens
        FROM requests WHERE {where} GROUP BY model ORDER BY requests DESC LIMIT 20""",
        params,
    )
    finish = _rows(
        client,
        f"""
        SELECT model, if(finish_reason = '', '(none)', finish_reason) AS finish_reason, count() AS requests
        FROM requests WHERE {where} GROUP BY model, finish_reason ORDER BY model, requests DESC""",
        params,
    )
    lengths = _rows(
        client,
        f"""
        SELECT model, bin * 50 AS completion_tokens, count() AS requests FROM (
            SELECT model, least(intDiv(completion_tokens, 50), 40) AS bin FROM requests
            WHERE {where} AND status = 200) GROUP BY model, bin ORDER BY model, bin""",
        params,
    )
    for row in by_model:
        row["completion_tokens"] = _q(row["completion_tokens"])
    # Policy figures come from the hourly policy rollups (migration 0007), not from the raw rows.
    hourly, hourly_params = condition(filters, scope, "hour")
    decisions = _rows(
        client,
        f"""
        SELECT model, decision, sum(requests) AS n FROM policy_hourly
        WHERE {hourly} AND decision != '' GROUP BY model, decision ORDER BY model, n DESC""",
        hourly_params,
    )
    rates = _rows(
        client,
        f"""
        SELECT model, sum(requests) AS n, sum(pii_requests) / n AS pii_rate, sum(toxic_requests) / n AS toxicity_rate
        FROM policy_hourly WHERE {hourly} GROUP BY model ORDER BY n DESC LIMIT 20""",
        hourly_params,
    )
    for row in decisions + rates:
        row["requests"] = row.pop("n")  # not aliased `requests`: ClickHouse would read it as the column
    findings = _rows(
        client,
        f"""
        SELECT kind, action, sum(findings) AS findings FROM findings_hourly
        WHERE {hourly} GROUP BY kind, action ORDER BY findings DESC LIMIT 40""",
        hourly_params,
    )
    # Feedback is joined to the requests in range and scope, so it filters like every other figure.
    feedback = _rows(
        client,
        f"""
        SELECT r.model AS model, f.source AS source, count() AS feedback,
               countIf(f.score IS NOT NULL) AS scored, avgOrNull(f.score) AS mean_score
        FROM (SELECT request_id, source, score FROM feedback FINAL WHERE tenant = {{tenant:String}}) AS f
        INNER JOIN (SELECT request_id, model FROM requests WHERE {where}) AS r ON f.request_id = r.request_id
        GROUP BY model, source ORDER BY model, source""",
        params,
    )
    for row in feedback:
        row["mean_score"] = None if row["mean_score"] is None else round(float(row["mean_score"]), 4)
    return {
        "by_model": by_model,
        "feedback": feedback,
        "finish_reasons": finish,
        "completion_length": lengths,
        "decisions": decisions,
        "policy_rates": rates,
        "findings": findings,
        "injection_toxicity": {
            "families": list(SAFETY_FAMILIES),
            "by_model": safety_findings(client, hourly, hourly_params, "model"),
            "by_team": safety_findings(client, hourly, hourly_params, "team"),
        },
    }


# The scanners the behaviour page breaks down by model and team. Their kinds are `<family>:<detail>`
# (policies/scanners/injection.py and toxicity.py); a scanner that failed is `error:<scanner>`, not
# one of these, and is counted with the other findings only.
SAFETY_FAMILIES = ("injection", "toxicity")
SAFETY_NAMES = 15


def safety_findings(
    client: Any, where: str, params: dict[str, Any], column: Literal["model", "team"]
) -> list[dict[str, Any]]:
    """Injection and toxicity findings per `column` (model or team), family, kind and action, for the
    SAFETY_NAMES names with the most of them. The action is as recorded: `monitor` where the rule only
    watched (the default policy's injection rule), so a page never shows a watched finding as acted on."""
    # Top names first, then every row of those names: a plain LIMIT on the grouped rows would cut a
    # name's kinds or actions off half way and show it with too few findings.
    family = "splitByChar(':', kind)[1]"
    return _rows(
        client,
        f"""
        SELECT {column} AS name, {family} AS family, kind, action, sum(findings) AS findings
        FROM findings_hourly
        WHERE {where} AND has({{families:Array(String)}}, {family}) AND {column} IN (
            SELECT {column} FROM findings_hourly WHERE {where} AND has({{families:Array(String)}}, {family})
            GROUP BY {column} ORDER BY sum(findings) DESC, {column} LIMIT {SAFETY_NAMES})
        GROUP BY name, family, kind, action ORDER BY name, family, kind, action LIMIT 2000""",
        {**params, "families": list(SAFETY_FAMILIES)},
    )


def spent_since(client: Any, scope: str, tenant: str, value: str, since: datetime) -> int:
    """Micro-USD a key (team, project, tenant) spent since `since`: where a budget starts when its
    shared counter is missing. Unpriced rows (NULL cost) count as nothing, as they do in budgets."""
    column = {"key": "api_key_id", "team": "team", "project": "project", "tenant": "tenant"}[scope]
    rows = _rows(
        client,
        f"SELECT toInt64(sum(ifNull(cost_micro_usd, 0))) AS spent FROM requests "
        f"WHERE tenant = {{tenant:String}} AND {column} = {{value:String}} AND ts >= {{since:DateTime64(3, 'UTC')}}",
        {"tenant": tenant, "value": value, "since": since},
    )
    return int(rows[0]["spent"]) if rows else 0


def violations(client: Any, filters: Filters, scope: Scope, limit: int = 100) -> list[dict[str, Any]]:
    """Requests Warden refused or that failed policy-like checks: metrics only, newest first."""
    where, params = condition(filters, scope)
    params["limit"] = limit
    rows = _rows(
        client,
        f"""
        SELECT request_id, ts, team, model, api_key_id, status, error_class, policy, decision FROM requests
        WHERE {where} AND (status IN (400, 403, 413) OR decision = 'block')
        ORDER BY ts DESC LIMIT {{limit:UInt32}}""",
        params,
    )
    for row in rows:
        row["request_id"] = str(row["request_id"])
    return rows


# -- drift -------------------------------------------------------------------------------------

DRIFT_METRICS = {
    "latency_ms": "latency_ms",
    "prompt_tokens": "prompt_tokens",
    "completion_tokens": "completion_tokens",
    "upstream_ms": "upstream_ms",
}
DRIFT_RATES = {
    "error_rate": "status >= 400",
    "refusal_rate": "refusal",
    "truncation_rate": "finish_reason = 'length'",
    "client_error_rate": "status >= 400 AND status < 500",
}
# A page runs one z-test per model and rate (16 with four models): at p < 0.01 each, a page with no
# change at all alarmed about once in seven loads. Rate alarms are therefore Benjamini-Hochberg
# discoveries across all the page's rate tests at this false discovery rate (valid for the positively
# correlated tests here: errors include client errors).
DRIFT_FDR = 0.01
# ...and a change must also be large enough to act on. Significance alone grows with traffic: a big
# tenant's 3.0% -> 3.2% is certain and uninteresting. Our rates live around 1-5%, so half a point (a 1%
# rate rising to 1.5%) is the smallest change worth a look; a fifth of the baseline keeps a large rate
# (a 40% truncation share) from alarming on a point or two.
DRIFT_MIN_ABSOLUTE = 0.005
DRIFT_MIN_RELATIVE = 0.2


def drift(client: Any, current: Filters, baseline: Filters, scope: Scope) -> dict[str, Any]:
    """Current window against a frozen baseline, per model: PSI and Jensen-Shannon distance on
    fixed reference-decile bins, and two-proportion z-tests on rates, corrected for the number of
    tests on the page (each rate gets a Benjamini-Hochberg `q_value` and whether it is an `alarm`).
    Three scans in all: sizes and rates, baseline deciles, and every metric's bin counts at once."""
    base_where, base_params = condition(baseline, scope)
    cur_where, cur_params = condition(current, scope)
    cur_params = {f"c_{k}": v for k, v in cur_params.items()}
    for name in cur_params:
        cur_where = cur_where.replace("{" + name[2:] + ":", "{" + name + ":")
    both = f"(({base_where}) OR ({cur_where}))"
    params: dict[str, Any] = {**base_params, **cur_params}
    rate_columns = ", ".join(
        f"countIf({base_where} AND {predicate}) AS b_{name}, countIf({cur_where} AND {predicate}) AS c_{name}"
        for name, predicate in DRIFT_RATES.items()
    )
    sized = _rows(
        client,
        f"""
        SELECT model, countIf({base_where}) AS base, countIf({cur_where}) AS cur, {rate_columns}
        FROM requests WHERE {both} GROUP BY model HAVING cur > 0 ORDER BY cur DESC LIMIT 10""",
        params,
    )
    ready = [row["model"] for row in sized if row["base"] >= MIN_SAMPLE and row["cur"] >= MIN_SAMPLE]
    # Distributions need far fewer rows than a big tenant has: above DISTRIBUTION_ROWS per model and
    # window, bins and deciles read a deterministic sample (sizes and rates above stay exact).
    largest = max([max(int(r["base"]), int(r["cur"])) for r in sized if r["model"] in ready] or [0])
    params["sample"] = max(1, math.ceil(largest / DISTRIBUTION_ROWS))
    # Sampled on a hash of the timestamp: `ts` is read for the window anyway, so the sample costs no
    # extra column (request_id would be 16 more bytes a row), and hashing avoids aliasing with
    # regularly spaced timestamps (a plain modulo of the milliseconds kept every row of some loads).
    sampled = " AND cityHash64(ts) % {sample:UInt32} = 0" if params["sample"] > 1 else ""
    edges: dict[str, dict[str, list[float]]] = {}
    bins: dict[str, dict[str, tuple[list[int], list[int]]]] = {}
    series: dict[str, dict[Any, list[float]]] = {}
    if ready:
        params["models"] = ready
        deciles = ", ".join(
            f"quantiles(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)(toFloat64({column})) AS q_{name}"
            for name, column in DRIFT_METRICS.items()
        )
        for row in _rows(
            client,
            f"""
                SELECT model, {deciles} FROM requests
                WHERE {base_where} AND has({{models:Array(String)}}, model){sampled} GROUP BY model""",
            params,
        ):
            edges[row["model"]] = {
                name: sorted({float(e) for e in row[f"q_{name}"]}) for name in DRIFT_METRICS
            }
        order = [m for m in ready if m in edges]
        params["models"] = order
        counters = []
        for name, column in DRIFT_METRICS.items():
            # The bin is how many of the model's baseline deciles the value exceeds.
            params[f"e_{name}"] = [edges[m][name] for m in order]
            counters.append(
                f"toUInt8(arrayCount(e -> {column} > e, arrayElement({{e_{name}:Array(Array(Float64))}}, "
                f"indexOf({{models:Array(String)}}, toString(model))))) AS bin_{name}"
            )
        # Group by the (small) bin numbers instead of aggregating maps: a plain hash aggregation.
        grouped = _rows(
            client,
            f"""
                SELECT model, {base_where} AS in_base, {cur_where} AS in_cur, {", ".join(counters)}, count() AS n
                FROM requests WHERE {both} AND has({{models:Array(String)}}, model){sampled}
                GROUP BY model, in_base, in_cur, {", ".join(f"bin_{name}" for name in DRIFT_METRICS)}""",
            params,
        )
        for model in order:
            bins[model] = {name: ([0] * 10, [0] * 10) for name in DRIFT_METRICS}
        for row in grouped:
            for name in DRIFT_METRICS:
                base_counts, cur_counts = bins[row["model"]][name]
                if row["in_base"]:
                    base_counts[row[f"bin_{name}"]] += row["n"]
                if row["in_cur"]:
                    cur_counts[row[f"bin_{name}"]] += row["n"]
        # The latency PSI time series comes from the rollups' t-digests (deciles per day or hour,
        # interpolated into the baseline's bins): approximate, but it costs no scan of raw rows.
        series_where, series_params = condition(current, scope, "hour")
        step = "toStartOfHour(hour)" if current.hours <= 48 else "toStartOfDay(hour)"
        for row in _rows(
            client,
            f"""
                SELECT model, {step} AS t, quantilesTDigestMerge(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)(latency)
                       AS deciles, sum(requests) AS n
                FROM {rollup(current)} WHERE {series_where} AND has({{models:Array(String)}}, model)
                GROUP BY model, t ORDER BY t""",
            {**series_params, "models": order},
        ):
            if row["n"] >= MIN_SAMPLE // 4:
                series.setdefault(row["model"], {})[row["t"]] = [float(d) for d in row["deciles"]]
    results = []
    for row in sized:
        model = row["model"]
        entry: dict[str, Any] = {"model": model, "baseline_n": int(row["base"]), "current_n": int(row["cur"])}
        if model not in bins:
            entry["status"] = f"not enough data (need {MIN_SAMPLE} requests in each window)"
            results.append(entry)
            continue
        metrics = {}
        for name in DRIFT_METRICS:
            base_counts, cur_counts = bins[model][name]
            width = len(edges[model][name]) + 1  # repeated deciles collapse bins; the rest stay empty
            base_counts, cur_counts = base_counts[:width], cur_counts[:width]
            metrics[name] = {
                "psi": round(psi(base_counts, cur_counts), 4),
                "js_distance": round(js_distance(base_counts, cur_counts), 4),
            }
        rates = {}
        for name in DRIFT_RATES:
            base_hits, cur_hits = int(row[f"b_{name}"]), int(row[f"c_{name}"])
            z, p = two_proportion_z(base_hits, int(row["base"]), cur_hits, int(row["cur"]))
            rates[name] = {
                "baseline": base_hits / row["base"],
                "current": cur_hits / row["cur"],
                "z": round(z, 3),
                "p_value": p,
            }
        width = len(edges[model]["latency_ms"]) + 1
        base_latency = bins[model]["latency_ms"][0][:width]
        entry["latency_psi_series"] = [
            {
                "t": t,
                "psi": round(psi(base_latency, shares_from_deciles(deciles, edges[model]["latency_ms"])), 4),
            }
            for t, deciles in sorted(series.get(model, {}).items())
        ]
        entry.update(status="ok", metrics=metrics, rates=rates)
        results.append(entry)
    tests = [entry["rates"][name] for entry in results if entry["status"] == "ok" for name in DRIFT_RATES]
    for values, q in zip(tests, benjamini_hochberg([v["p_value"] for v in tests]), strict=True):
        values["q_value"] = q
        values["alarm"] = q <= DRIFT_FDR and large_enough(values["baseline"], values["current"])
    for entry in results:
        if entry["status"] == "ok":
            entry["changed"] = what_changed(entry["metrics"], entry["rates"])
            entry["dismissed"] = dismissed(entry["rates"], len(tests))
    return {
        "models": results,
        "thresholds": {
            "psi_moderate": 0.1,
            "psi_major": 0.25,
            "p_value": 0.01,
            "fdr": DRIFT_FDR,
            "rate_tests": len(tests),
            "min_absolute_change": DRIFT_MIN_ABSOLUTE,
            "min_relative_change": DRIFT_MIN_RELATIVE,
        },
        "distribution_sample": 1 / params["sample"],
    }


def shares_from_deciles(deciles: list[float], edges: list[float], scale: int = 1_000_000) -> list[int]:
    """Approximate counts per bin (bins split at `edges`) for a distribution known by its deciles:
    its CDF interpolated linearly through the deciles, extended one step past each end."""
    points = sorted(deciles)
    low = points[0] - (points[1] - points[0]) if len(points) > 1 else points[0]
    high = points[-1] + (points[-1] - points[-2]) if len(points) > 1 else points[-1]
    xs = [low, *points, high]
    ys = [0.0] + [(i + 1) / (len(points) + 1) for i in range(len(points))] + [1.0]

    def cdf(x: float) -> float:
        if x <= xs[0]:
            return 0.0
        for (x0, y0), (x1, y1) in zip(
            zip(xs, ys, strict=True), zip(xs[1:], ys[1:], strict=True), strict=False
        ):
            if x <= x1:
                return y0 + (y1 - y0) * ((x - x0) / (x1 - x0) if x1 > x0 else 1.0)
        return 1.0

    cuts = [0.0] + [cdf(e) for e in edges] + [1.0]
    return [round((b - a) * scale) for a, b in pairwise(cuts)]


def psi(base: list[int], cur: list[int], floor: float = 1e-4) -> float:
    """Population stability index over the same bins (0.1: moderate shift, 0.25: major)."""
    nb, nc = sum(base) or 1, sum(cur) or 1
    total = 0.0
    for b, c in zip(base, cur, strict=True):
        pb, pc = max(b / nb, floor), max(c / nc, floor)
        total += (pc - pb) * math.log(pc / pb)
    return total


def js_distance(base: list[int], cur: list[int]) -> float:
    """Jensen-Shannon distance (base 2): 0 identical, 1 disjoint."""
    nb, nc = sum(base) or 1, sum(cur) or 1
    p, q = [b / nb for b in base], [c / nc for c in cur]
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]

    def kl(x: list[float], y: list[float]) -> float:
        return sum(a * math.log2(a / b) for a, b in zip(x, y, strict=True) if a > 0)

    return math.sqrt(max(0.5 * kl(p, m) + 0.5 * kl(q, m), 0.0))


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """z statistic and two-sided p-value for p2 != p1."""
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (x2 / n2 - x1 / n1) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values in the input's order: the tests whose adjusted value is at
    most q are the discoveries at false discovery rate q."""
    count = len(p_values)
    adjusted = [1.0] * count
    running = 1.0
    for rank, index in reversed(list(enumerate(sorted(range(count), key=lambda i: p_values[i]), 1))):
        running = min(running, p_values[index] * count / rank)
        adjusted[index] = running
    return adjusted


def large_enough(baseline: float, current: float) -> bool:
    """Whether a rate moved by at least DRIFT_MIN_ABSOLUTE and DRIFT_MIN_RELATIVE of its baseline."""
    change = abs(current - baseline)
    return change >= DRIFT_MIN_ABSOLUTE and (baseline == 0 or change / baseline >= DRIFT_MIN_RELATIVE)


def _rate_change(name: str, values: dict[str, Any]) -> str:
    direction = "up" if values["current"] > values["baseline"] else "down"
    return (
        f"{name} {direction}: {values['baseline']:.1%} → {values['current']:.1%} (p={values['p_value']:.1e}"
    )


def what_changed(metrics: dict[str, Any], rates: dict[str, Any]) -> list[str]:
    """Shifts of PSI 0.1 and more, and the rates that are alarms."""
    changed = []
    for name, values in metrics.items():
        if values["psi"] >= 0.25:
            changed.append(f"{name}: major shift (PSI {values['psi']:.2f})")
        elif values["psi"] >= 0.1:
            changed.append(f"{name}: moderate shift (PSI {values['psi']:.2f})")
    for name, values in rates.items():
        if values["alarm"]:
            changed.append(f"{_rate_change(name, values)}, q={values['q_value']:.1e})")
    return changed


def dismissed(rates: dict[str, Any], tests: int) -> list[str]:
    """Rates below p = 0.01 on their own that are not alarms, and why: shown, so that a reader sees
    what the correction held back."""
    held = []
    for name, values in rates.items():
        if values["p_value"] < 0.01 and not values["alarm"]:
            if values["q_value"] > DRIFT_FDR:
                why = f"not significant among {tests} rate tests (q={values['q_value']:.2f})"
            else:
                why = "too small a change to act on"
            held.append(f"{_rate_change(name, values)}): {why}")
    return held


# -- experiments -------------------------------------------------------------------------------

# False discovery rate for the experiments page: looser than drift's, because a person reads the page
# deliberately before promoting, where drift alarms on its own.
EXPERIMENT_FDR = 0.05


def welch_z(mean1: float, var1: float, n1: int, mean2: float, var2: float, n2: int) -> tuple[float, float]:
    """Welch statistic for mean2 != mean1 and its two-sided p-value by the normal approximation."""
    se = math.sqrt(var1 / n1 + var2 / n2)
    if se == 0:
        return 0.0, 1.0
    z = (mean2 - mean1) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def experiments(
    client: Any, filters: Filters, scope: Scope, controls: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Per experiment and variant in range and scope: traffic, latency, cost, errors, refusals and
    feedback, each variant tested against the experiment's baseline with Benjamini-Hochberg control
    over every test on the page. `controls` names each experiment's baseline, the variant it lists
    first; an experiment missing there is compared with its first variant by name."""
    where, params = condition(filters, scope)
    variants = _rows(
        client,
        f"""
        SELECT experiment, variant, count() AS n,
               quantiles(0.5, 0.95)(latency_ms) AS latency,
               avgOrNull(cost_micro_usd) AS cost_per_request,
               countIf(status >= 400 OR error_class != '') AS errors,
               countIf(decision = 'block') AS refusals
        FROM requests WHERE {where} AND experiment != ''
        GROUP BY experiment, variant ORDER BY experiment, variant""",
        params,
    )
    # The feedback table is read for this tenant only, then joined to the scoped requests: a foreign
    # team's scores never reach a team-bound viewer.
    scores = _rows(
        client,
        f"""
        SELECT r.experiment AS experiment, r.variant AS variant, count() AS scored,
               avg(f.score) AS mean, varSampOrNull(f.score) AS variance
        FROM (SELECT request_id, assumeNotNull(score) AS score FROM feedback FINAL
              WHERE tenant = {{tenant:String}} AND score IS NOT NULL) AS f
        INNER JOIN (SELECT request_id, experiment, variant FROM requests WHERE {where} AND experiment != '') AS r
        ON f.request_id = r.request_id
        GROUP BY experiment, variant""",
        params,
    )
    feedback = {(r["experiment"], r["variant"]): r for r in scores}
    by_experiment: dict[str, list[dict[str, Any]]] = {}
    for row in variants:
        n = int(row["n"])
        p50, p95 = _q(row["latency"])
        cost = row["cost_per_request"]
        score = feedback.get((row["experiment"], row["variant"]))
        scored = int(score["scored"]) if score else 0
        mean = float(score["mean"]) if score else None
        variance = float(score["variance"]) if score and score["variance"] is not None else None
        half = 1.96 * math.sqrt(variance / scored) if variance is not None else None
        by_experiment.setdefault(row["experiment"], []).append(
            {
                "variant": row["variant"],
                "requests": n,
                "latency_ms": {"p50": p50, "p95": p95},
                "cost_per_request_usd": None if cost is None else float(cost) / 1e6,
                "errors": int(row["errors"]),
                "error_rate": int(row["errors"]) / n,
                "refusal_rate": int(row["refusals"]) / n,
                "score": {
                    "n": scored,
                    "mean": mean,
                    "ci95": None if half is None or mean is None else [mean - half, mean + half],
                    "variance": variance,
                },
            }
        )
    # (experiment, variant, metric, p) for every test, so one BH pass covers the whole page.
    tests: list[tuple[dict[str, Any], str, float]] = []
    baselines: dict[str, str] = {}
    for name, rows in by_experiment.items():
        # The control may have no rows in range (or the experiment be unknown): then the first by name,
        # a stable choice that keeps the comparison the same on every load.
        control = (controls or {}).get(name)
        base = next((row for row in rows if row["variant"] == control), rows[0])
        rows.sort(key=lambda row: row is not base)  # the baseline first, the others by name
        baselines[name] = base["variant"]
        base["baseline"] = True
        for row in rows[1:]:
            row["baseline"] = False
            row["vs_baseline"] = {}
            _, p = two_proportion_z(base["errors"], base["requests"], row["errors"], row["requests"])
            tests.append((row, "error_rate", p))
            b, s = base["score"], row["score"]
            if b["n"] >= 2 and s["n"] >= 2 and b["variance"] is not None and s["variance"] is not None:
                _, p = welch_z(b["mean"], b["variance"], b["n"], s["mean"], s["variance"], s["n"])
                tests.append((row, "mean_score", p))
    adjusted = benjamini_hochberg([p for _, _, p in tests])
    for (row, metric, p), q in zip(tests, adjusted, strict=True):
        row["vs_baseline"][metric] = {"p_value": p, "q_value": q, "significant": q <= EXPERIMENT_FDR}
    return {
        "fdr": EXPERIMENT_FDR,
        "tests": len(tests),
        "experiments": [
            {"name": name, "baseline": baselines[name], "variants": rows}
            for name, rows in by_experiment.items()
        ],
    }
