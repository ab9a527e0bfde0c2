"""Dashboard pages and their JSON twins, scoped to the viewer's teams.

The permission guard comes from the app (`blueprint(requires)`): dashboards may not import `proxy`,
and one guard means a refused dashboard request is audited like any other. A bad filter on a JSON
twin raises `queries.FilterError` for the app to answer in the common error shape.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import plotly
from flask import Blueprint, Response, current_app, g, render_template, request, send_file

from analytics import queries
from analytics.access import Permission, allows, scope_for
from dashboards import figures

View = Callable[..., Any]


class Requires(Protocol):
    """The app's permission guard: `page=True` sends the anonymous to sign in instead of a 401."""

    def __call__(self, permission: Permission, *, page: bool = ...) -> Callable[[View], View]: ...


PAGES = ("overview", "latency", "cost", "drift", "behaviour", "experiments", "audit")
TITLES = {
    "overview": "Overview",
    "latency": "Latency",
    "cost": "Cost",
    "drift": "Drift",
    "behaviour": "Behaviour",
    "experiments": "Experiments",
    "audit": "Audit",
}
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


class AdminLogEntry(Protocol):
    """One admin audit-log row as the audit page shows it."""

    @property
    def seq(self) -> int: ...
    @property
    def at(self) -> datetime: ...
    @property
    def actor(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def ip(self) -> str: ...


class DashboardServices(Protocol):
    """What the pages need from the running Warden; app.py's `Services` provides it (dashboards may
    not import proxy, where the audit log lives)."""

    def clickhouse(self) -> Any: ...
    def audit_entries(self, tenant: str, limit: int) -> Sequence[AdminLogEntry]: ...
    def budget_usage(self, actor: Any) -> list[dict[str, Any]]: ...
    def experiment_states(self, tenant: str) -> dict[str, dict[str, Any]]: ...


def _services() -> DashboardServices:
    services: DashboardServices = current_app.extensions["warden"]
    return services


def _data(name: str) -> dict[str, Any]:
    actor = g.warden_actor
    scope = scope_for(actor, Permission.DASHBOARDS_READ)
    assert scope is not None
    filters = queries.parse_filters(request.args)
    client = _services().clickhouse()
    if name == "overview":
        return queries.overview(client, filters, scope)
    if name == "latency":
        return queries.latency(client, filters, scope)
    if name == "cost":
        cost = queries.cost(client, filters, scope)
        # Budgets now, whatever the page's time range: spend in each budget's current period.
        cost["budgets"] = _services().budget_usage(actor)
        return cost
    if name == "behaviour":
        return queries.behaviour(client, filters, scope)
    if name == "experiments":
        known = _services().experiment_states(actor.tenant)
        data = queries.experiments(client, filters, scope, {n: e["control"] for n, e in known.items()})
        # State and winner are the experiment store's, which `prompts:read` reads; the numbers above
        # are only what the viewer's team scope already allows.
        if allows(actor, Permission.PROMPTS_READ):
            for experiment in data["experiments"]:
                found = known.get(experiment["name"], {})
                experiment["state"], experiment["winner"] = found.get("state"), found.get("winner")
        return data
    if name == "drift":
        since = request.args.get("baseline_since")
        until = request.args.get("baseline_until")
        length = filters.until - filters.since
        baseline = queries.Filters(
            queries.parse_time(since, "baseline_since") if since else filters.since - length,
            queries.parse_time(until, "baseline_until") if until else filters.since,
            filters.teams,
            filters.projects,
            filters.models,
            filters.keys,
        )
        if baseline.since >= baseline.until:
            raise queries.FilterError("baseline_since must be before baseline_until")
        queries.check_range(baseline.since, baseline.until, "the baseline (baseline_since to baseline_until)")
        drift = queries.drift(client, filters, baseline, scope)
        drift["baseline"] = {"since": baseline.since.isoformat(), "until": baseline.until.isoformat()}
        return drift
    # audit
    result: dict[str, Any] = {
        "violations": queries.violations(client, filters, scope),
        "transcripts_readable": [],
        "admin_log": None,
    }
    result["transcripts_readable"] = [
        v["request_id"] for v in result["violations"] if allows(actor, Permission.TRANSCRIPTS_READ, v["team"])
    ]
    if allows(actor, Permission.AUDIT_READ):
        entries = _services().audit_entries(actor.tenant, 100)
        result["admin_log"] = [
            {
                "seq": e.seq,
                "at": e.at,
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "outcome": e.outcome,
                "ip": e.ip,
            }
            for e in entries
        ]
    return result


def _render_figures(name: str, data: dict[str, Any]) -> list[str]:
    build = getattr(figures, name, None)
    # Names in the data come from requests (a model name can be anything a caller sent): the JSON goes
    # inside a <script>, so no "</" may survive to close it.
    return (
        [fig.to_json().replace("</", "<\\/").replace("<!--", "<\\!--") for fig in build(data)]
        if build
        else []
    )


def plotly_js() -> Response:
    # Served from the installed package: deployments are often offline, so no CDN.
    return send_file(PLOTLY_JS, mimetype="application/javascript", max_age=86400)


def _can_promote() -> bool:
    actor = g.get("warden_actor")
    return actor is not None and actor.via == "session" and allows(actor, Permission.PROMPTS_MANAGE)


def _view(name: str, as_json: bool) -> Any:
    try:
        data = _data(name)
    except queries.FilterError as exc:
        if as_json:
            raise
        return render_template(
            "dashboard.html",
            page=name,
            pages=PAGES,
            titles=TITLES,
            figures=[],
            data=None,
            message=str(exc),
            args=request.args,
        ), exc.status
    if as_json:
        return Response(json.dumps(data, default=_plain), mimetype="application/json")
    return render_template(
        "dashboard.html",
        page=name,
        pages=PAGES,
        titles=TITLES,
        data=data,
        message="",
        figures=_render_figures(name, data),
        args=request.args,
        # The experiments page's promote buttons: a form needs a session and its CSRF token.
        can_promote=_can_promote(),
        csrf_token=g.get("warden_csrf", ""),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def duration(ms: object) -> str:
    """A latency in the unit a person reads it in: `346 ms`, `1.23 s`, `2.5 min` (— when unknown)."""
    if not isinstance(ms, int | float) or isinstance(ms, bool):
        return "—"
    if ms < 1000:
        return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    return f"{ms / 60_000:.1f} min"


def blueprint(requires: Requires) -> Blueprint:
    """The dashboards, each page and JSON twin behind `requires(dashboards:read)`."""
    bp = Blueprint("dashboards", __name__, url_prefix="/dashboards", template_folder="templates")
    page = requires(Permission.DASHBOARDS_READ, page=True)
    data = requires(Permission.DASHBOARDS_READ)
    bp.add_app_template_filter(duration, "duration")
    bp.add_url_rule("/plotly.min.js", "plotly_js", page(plotly_js), methods=["GET"])
    for name in PAGES:
        bp.add_url_rule(f"/{name}", name, page(_page_view(name, as_json=False)), methods=["GET"])
        bp.add_url_rule(
            f"/{name}.json", f"{name}_json", data(_page_view(name, as_json=True)), methods=["GET"]
        )
    return bp


def _page_view(name: str, as_json: bool) -> View:
    def view() -> Any:
        return _view(name, as_json)

    return view
