"""Plotly figures for each page, built from the query results (axis titles, units and legends on all)."""

from __future__ import annotations

import functools
import html
from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go

LAYOUT = {
    "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
    "height": 360,
    "template": "plotly_white",
    "legend": {"orientation": "h", "y": -0.2},
}


def _escaped_labels(
    build: Callable[[dict[str, Any]], list[go.Figure]],
) -> Callable[[dict[str, Any]], list[go.Figure]]:
    """Category labels and trace names come from requests (a model name is whatever a caller sent), and
    plotly renders a subset of HTML in them (`<a href>` becomes a link): escape them to plain text."""

    @functools.wraps(build)
    def escaped(data: dict[str, Any]) -> list[go.Figure]:
        figures = build(data)
        for figure in figures:
            for trace in figure.data:
                if isinstance(getattr(trace, "name", None), str):
                    trace.name = html.escape(trace.name)
                x = getattr(trace, "x", None)
                if x is not None and any(isinstance(v, str) for v in x):
                    trace.x = [html.escape(v) if isinstance(v, str) else v for v in x]
        return figures

    return escaped


def _figure(title: str, x_title: str, y_title: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, showlegend=True, **LAYOUT)
    return fig


@_escaped_labels
def overview(data: dict[str, Any]) -> list[go.Figure]:
    models = _figure("Requests by model", "model", "requests")
    models.add_bar(
        x=[r["name"] for r in data["top_models"]],
        y=[r["requests"] for r in data["top_models"]],
        name="requests",
    )
    models.add_bar(
        x=[r["name"] for r in data["top_models"]], y=[r["errors"] for r in data["top_models"]], name="errors"
    )
    teams = _figure("Spend by team", "team", "spend (USD)")
    teams.add_bar(
        x=[r["name"] for r in data["top_teams"]],
        y=[r["spend_micro_usd"] / 1e6 for r in data["top_teams"]],
        name="spend (USD)",
    )
    return [models, teams]


@_escaped_labels
def latency(data: dict[str, Any]) -> list[go.Figure]:
    over_time = _figure("Latency over time", "time (UTC)", "latency (ms)")
    times = [r["t"] for r in data["series"]]
    for index, label in enumerate(("p50", "p95", "p99")):
        over_time.add_scatter(
            x=times,
            y=[_at(r["latency_ms"], index) for r in data["series"]],
            name=f"{label}",
            mode="lines+markers",
        )
    over_time.add_scatter(
        x=times,
        y=[_at(r["ttft_ms"], 0) for r in data["series"]],
        name="time to first token p50",
        mode="lines",
        line={"dash": "dot"},
    )
    split = _figure("Warden overhead vs upstream time (p50)", "model / upstream", "time (ms)")
    names = [f"{r['model']} / {r['upstream']}" for r in data["by_model"]]
    split.add_bar(x=names, y=[_at(r["upstream_ms"], 0) for r in data["by_model"]], name="upstream")
    split.add_bar(x=names, y=[_at(r["overhead_ms"], 0) for r in data["by_model"]], name="Warden overhead")
    split.update_layout(barmode="stack")
    speed = _figure("Output speed (p50)", "model", "tokens per second")
    speed.add_bar(
        x=list(data["tokens_per_second"]), y=list(data["tokens_per_second"].values()), name="tokens/s"
    )
    return [over_time, split, speed]


def _budgets(budgets: list[dict[str, Any]]) -> go.Figure:
    """Each budget of each team (key, project) in its current period: spent, reserved by requests in
    flight, and what remains of the hard threshold."""
    figure = _figure("Budgets this period", "USD", "budget")
    figure.update_layout(barmode="stack")
    rows = [(f"{b['scope']} {u[b['scope']]} · {b['period']}", u) for b in budgets for u in b["usage"]]
    if not rows:
        figure.add_annotation(
            text="No budgets you may see (limits and budgets: README)",
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
        )
        return figure
    names = [name for name, _ in rows]
    for label, field in (
        ("spent", "spent_usd"),
        ("reserved", "reserved_usd"),
        ("remaining", "remaining_usd"),
    ):
        figure.add_bar(y=names, x=[u[field] or 0 for _, u in rows], name=label, orientation="h")
    return figure


@_escaped_labels
def cost(data: dict[str, Any]) -> list[go.Figure]:
    over_time = _figure("Spend over time by model", "time (UTC)", "spend (USD)")
    for model in sorted({r["model"] for r in data["series"]}):
        rows = [r for r in data["series"] if r["model"] == model]
        over_time.add_bar(x=[r["t"] for r in rows], y=[r["spend_usd"] for r in rows], name=model)
    over_time.update_layout(barmode="stack")
    teams = _figure("Spend by team", "team", "spend (USD)")
    teams.add_bar(
        x=[r["name"] for r in data["by_team"]], y=[r["spend_usd"] for r in data["by_team"]], name="spend"
    )
    if any(r.get("saved_usd") for r in data["by_team"]):
        teams.add_bar(
            x=[r["name"] for r in data["by_team"]],
            y=[r.get("saved_usd", 0) for r in data["by_team"]],
            name="saved by the cache",
        )
    tokens = _figure("Tokens by model", "model", "tokens")
    tokens.add_bar(
        x=[r["name"] for r in data["by_model"]],
        y=[r["prompt_tokens"] for r in data["by_model"]],
        name="prompt",
    )
    tokens.add_bar(
        x=[r["name"] for r in data["by_model"]],
        y=[r["completion_tokens"] for r in data["by_model"]],
        name="completion",
    )
    return [over_time, teams, tokens, _budgets(data.get("budgets") or [])]


@_escaped_labels
def drift(data: dict[str, Any]) -> list[go.Figure]:
    figure = _figure("Distribution shift against the baseline (PSI)", "model", "PSI")
    ready = [m for m in data["models"] if m.get("status") == "ok"]
    metrics = sorted({name for m in ready for name in m["metrics"]})
    for metric in metrics:
        figure.add_bar(
            x=[m["model"] for m in ready], y=[m["metrics"][metric]["psi"] for m in ready], name=metric
        )
    figure.add_hrect(y0=0.1, y1=0.25, fillcolor="orange", opacity=0.12, line_width=0)
    figure.add_hrect(
        y0=0.25,
        y1=max([0.5] + [m["metrics"][k]["psi"] for m in ready for k in m["metrics"]]),
        fillcolor="red",
        opacity=0.08,
        line_width=0,
    )
    over_time = _figure("Latency PSI over time against the baseline", "time (UTC)", "PSI")
    for model in ready:
        points = model.get("latency_psi_series", [])
        over_time.add_scatter(
            x=[p["t"] for p in points],
            y=[p["psi"] for p in points],
            name=model["model"],
            mode="lines+markers",
        )
    over_time.add_hrect(y0=0.1, y1=0.25, fillcolor="orange", opacity=0.12, line_width=0)
    over_time.add_hrect(
        y0=0.25,
        y1=max([0.5] + [p["psi"] for m in ready for p in m.get("latency_psi_series", [])]),
        fillcolor="red",
        opacity=0.08,
        line_width=0,
    )
    rates = _figure("Rates: baseline vs current", "model / rate", "rate")
    names = [f"{m['model']} / {r}" for m in ready for r in m["rates"]]
    rates.add_bar(x=names, y=[m["rates"][r]["baseline"] for m in ready for r in m["rates"]], name="baseline")
    rates.add_bar(x=names, y=[m["rates"][r]["current"] for m in ready for r in m["rates"]], name="current")
    return [figure, over_time, rates]


@_escaped_labels
def behaviour(data: dict[str, Any]) -> list[go.Figure]:
    refusals = _figure("Refusal and error rates by model", "model", "share of requests")
    refusals.add_bar(
        x=[r["model"] for r in data["by_model"]],
        y=[r["refusal_rate"] for r in data["by_model"]],
        name="refusals",
    )
    refusals.add_bar(
        x=[r["model"] for r in data["by_model"]], y=[r["error_rate"] for r in data["by_model"]], name="errors"
    )
    finish = _figure("Finish reasons by model", "model", "requests")
    for reason in sorted({r["finish_reason"] for r in data["finish_reasons"]}):
        rows = [r for r in data["finish_reasons"] if r["finish_reason"] == reason]
        finish.add_bar(x=[r["model"] for r in rows], y=[r["requests"] for r in rows], name=reason)
    finish.update_layout(barmode="stack")
    lengths = _figure("Response length", "completion tokens (bins of 50)", "requests")
    for model in sorted({r["model"] for r in data["completion_length"]}):
        rows = [r for r in data["completion_length"] if r["model"] == model]
        lengths.add_scatter(
            x=[r["completion_tokens"] for r in rows],
            y=[r["requests"] for r in rows],
            name=model,
            mode="lines",
        )
    decisions = _figure("Policy decisions by model", "model", "requests")
    for decision in ("allow", "log", "flag", "mask", "block"):
        rows = [r for r in data["decisions"] if r["decision"] == decision]
        if rows:
            decisions.add_bar(x=[r["model"] for r in rows], y=[r["requests"] for r in rows], name=decision)
    decisions.update_layout(barmode="stack")
    rates = _figure("Prompts with PII, answers or prompts flagged toxic", "model", "share of requests")
    for key, name in (("pii_rate", "PII in prompt"), ("toxicity_rate", "toxicity finding")):
        rates.add_bar(
            x=[r["model"] for r in data["policy_rates"]], y=[r[key] for r in data["policy_rates"]], name=name
        )
    findings = _figure("Findings by kind (counts, never values)", "kind", "findings")
    for action in sorted({r["action"] for r in data["findings"]}):
        rows = [r for r in data["findings"] if r["action"] == action]
        findings.add_bar(x=[r["kind"] for r in rows], y=[r["findings"] for r in rows], name=action)
    findings.update_layout(barmode="stack")
    safety = data["injection_toxicity"]
    by_model = _safety_figure("Injection and toxicity findings by model", "model", safety["by_model"])
    by_team = _safety_figure("Injection and toxicity findings by team", "team", safety["by_team"])
    feedback = _figure("Mean feedback score by model", "model", "mean score")
    if not any(r["scored"] for r in data["feedback"]):
        feedback.add_annotation(
            text="No scored feedback in this range", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5
        )
    for source in sorted({r["source"] for r in data["feedback"]}):
        rows = [r for r in data["feedback"] if r["source"] == source and r["scored"]]
        feedback.add_bar(
            x=[r["model"] for r in rows],
            y=[r["mean_score"] for r in rows],
            text=[f"{r['scored']} scored" for r in rows],
            name=source,
        )
    return [refusals, finish, lengths, decisions, rates, findings, by_model, by_team, feedback]


def _safety_figure(title: str, dimension: str, rows: list[dict[str, Any]]) -> go.Figure:
    """One stacked bar per name, a segment per kind and action; kinds of one family share a legend group
    so a reader can hide all of injection or toxicity at once."""
    figure = _figure(title, dimension, "findings")
    figure.update_layout(barmode="stack", xaxis={"categoryorder": "total descending"})
    if not rows:
        figure.add_annotation(
            text="No injection or toxicity findings in this range",
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
        )
        return figure
    for kind, action in sorted({(r["kind"], r["action"]) for r in rows}):
        segment = [r for r in rows if r["kind"] == kind and r["action"] == action]
        figure.add_bar(
            x=[r["name"] for r in segment],
            y=[r["findings"] for r in segment],
            name=f"{kind} ({action})",
            legendgroup=segment[0]["family"],
            # Monitor findings changed nothing: hatched, so they do not read as flagged or blocked.
            marker={"pattern": {"shape": "/" if action == "monitor" else ""}},
        )
    return figure


def _at(values: list[Any] | None, index: int) -> Any:
    return values[index] if values and len(values) > index else None


@_escaped_labels
def experiments(data: dict[str, Any]) -> list[go.Figure]:
    labels = [f"{e['name']} / {v['variant']}" for e in data["experiments"] for v in e["variants"]]
    variants = [v for e in data["experiments"] for v in e["variants"]]
    requests = _figure("Requests per variant", "experiment / variant", "requests")
    requests.add_bar(x=labels, y=[v["requests"] for v in variants], name="requests")
    scored = [(label, v) for label, v in zip(labels, variants, strict=True) if v["score"]["mean"] is not None]
    scores = _figure("Mean feedback score per variant (95% interval)", "experiment / variant", "mean score")
    scores.add_bar(
        x=[label for label, _ in scored],
        y=[v["score"]["mean"] for _, v in scored],
        error_y={
            "type": "data",
            "array": [
                (v["score"]["ci95"][1] - v["score"]["mean"]) if v["score"]["ci95"] else 0 for _, v in scored
            ],
        },
        name="mean score",
    )
    return [requests, scores]
