"""Limits and budgets in the admin API: `GET|PUT /api/limits`, `DELETE /api/limits/<id>`, and the same
for `/api/budgets`, whose listing carries each budget's spend and what remains of it.

Rules from the config file are listed (`source: config`) but can only be changed in the file. A team
rule or a key's rule needs `limits:manage` in that team; project and tenant rules need it tenant-wide.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from analytics.access import Permission, require
from proxy.identity.api_views import answer_refusals, change, json_body, signed_in
from proxy.identity.directory import IdentityError
from proxy.identity.guard import requires
from proxy.settings import BudgetRule, LimitRule
from proxy.traffic.report import budget_report, listing, team_of
from proxy.traffic.rules_store import RuleStore, describe

bp = Blueprint("traffic_api", __name__, url_prefix="/api")
answer_refusals(bp, {404: "not_found"})


def _services() -> Any:
    return current_app.extensions["warden"]


def _check_manage(fields: dict[str, Any]) -> None:
    actor = signed_in()
    scope, match = fields.get("scope"), fields.get("match")
    probe = LimitRule(str(scope), actor.tenant, str(match or "*"))
    team = (
        team_of(_services(), probe, actor.tenant)
        if scope in ("team", "key") and isinstance(match, str)
        else None
    )
    require(actor, Permission.LIMITS_MANAGE, team)


@bp.get("/limits")
@requires(Permission.LIMITS_READ)
def list_limits() -> Response:
    return jsonify({"limits": [row for row, _ in listing(_services(), signed_in(), LimitRule)]})


@bp.put("/limits")
@requires(Permission.LIMITS_MANAGE)
def set_limit() -> Response:
    fields = json_body()
    _check_manage(fields)
    stored = _services().traffic_rules.set_limit(signed_in().tenant, fields, change())
    return jsonify(describe(stored))


@bp.delete("/limits/<rule_id>")
@requires(Permission.LIMITS_MANAGE)
def delete_limit(rule_id: str) -> Response:
    return _delete(rule_id, LimitRule)


@bp.get("/budgets")
@requires(Permission.LIMITS_READ)
def list_budgets() -> Response:
    """Each budget with, for every team (key, project) it covers, its spend in the current period."""
    return jsonify({"budgets": budget_report(_services(), signed_in())})


@bp.put("/budgets")
@requires(Permission.LIMITS_MANAGE)
def set_budget() -> Response:
    fields = json_body()
    _check_manage(fields)
    stored = _services().traffic_rules.set_budget(signed_in().tenant, fields, change())
    return jsonify(describe(stored))


@bp.delete("/budgets/<rule_id>")
@requires(Permission.LIMITS_MANAGE)
def delete_budget(rule_id: str) -> Response:
    return _delete(rule_id, BudgetRule)


def _delete(rule_id: str, kind: type[LimitRule] | type[BudgetRule]) -> Response:
    actor = signed_in()
    store: RuleStore = _services().traffic_rules
    if rule_id.startswith("config:"):
        raise IdentityError("rules from the config file are changed in the file", 400)
    stored = store.get(actor.tenant, rule_id)
    if not isinstance(stored.rule, kind):
        raise IdentityError(f"no such {'limit' if kind is LimitRule else 'budget'} {rule_id[:64]!r}", 404)
    require(actor, Permission.LIMITS_MANAGE, team_of(_services(), stored.rule, actor.tenant))
    return jsonify(describe(store.delete(actor.tenant, rule_id, change())))
