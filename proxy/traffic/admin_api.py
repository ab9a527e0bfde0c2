"""Limits and budgets in the admin API: `GET|PUT /api/limits`, `DELETE /api/limits/<id>`, and the same
for `/api/budgets`, whose listing carries each budget's spend and what remains of it.

Rules from the config file are listed (`source: config`) but can only be changed in the file. A team
rule or a key's rule needs `limits:manage` in that team; project and tenant rules need it tenant-wide.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from analytics.access import AccessDenied, Actor, Permission, require
from proxy.errors import access_error
from proxy.identity.directory import Change, IdentityError
from proxy.identity.guard import actor_label, client_ip, deny, requires
from proxy.jsonbody import NotJson, parse_json
from proxy.settings import BudgetRule, LimitRule
from proxy.traffic.report import budget_report, listing, team_of
from proxy.traffic.rules_store import RuleStore, describe

bp = Blueprint("traffic_api", __name__, url_prefix="/api")


def _services() -> Any:
    return current_app.extensions["warden"]


def _actor() -> Actor:
    actor: Actor = g.warden_actor
    return actor


@bp.errorhandler(IdentityError)
def _identity_error(exc: IdentityError) -> Response:
    return access_error(exc.status, str(exc), "not_found" if exc.status == 404 else "invalid")


@bp.errorhandler(AccessDenied)
def _denied(exc: AccessDenied) -> Response:
    deny(_actor(), exc.permission.value)
    return access_error(403, str(exc), "permission_denied")


def _body() -> dict[str, Any]:
    try:
        payload = parse_json(request.get_data())
    except NotJson as exc:
        raise IdentityError(f"send a JSON object body (this one is not JSON: {exc})") from None
    if not isinstance(payload, dict):
        raise IdentityError("send a JSON object body")
    return payload


def _change() -> Change:
    actor = _actor()
    return Change(actor=actor_label(actor), tenant=actor.tenant, ip=client_ip())


def _check_manage(fields: dict[str, Any]) -> None:
    actor = _actor()
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
    return jsonify({"limits": [row for row, _ in listing(_services(), _actor(), LimitRule)]})


@bp.put("/limits")
@requires(Permission.LIMITS_MANAGE)
def set_limit() -> Response:
    fields = _body()
    _check_manage(fields)
    stored = _services().traffic_rules.set_limit(_actor().tenant, fields, _change())
    return jsonify(describe(stored))


@bp.delete("/limits/<rule_id>")
@requires(Permission.LIMITS_MANAGE)
def delete_limit(rule_id: str) -> Response:
    return _delete(rule_id, LimitRule)


@bp.get("/budgets")
@requires(Permission.LIMITS_READ)
def list_budgets() -> Response:
    """Each budget with, for every team (key, project) it covers, its spend in the current period."""
    return jsonify({"budgets": budget_report(_services(), _actor())})


@bp.put("/budgets")
@requires(Permission.LIMITS_MANAGE)
def set_budget() -> Response:
    fields = _body()
    _check_manage(fields)
    stored = _services().traffic_rules.set_budget(_actor().tenant, fields, _change())
    return jsonify(describe(stored))


@bp.delete("/budgets/<rule_id>")
@requires(Permission.LIMITS_MANAGE)
def delete_budget(rule_id: str) -> Response:
    return _delete(rule_id, BudgetRule)


def _delete(rule_id: str, kind: type[LimitRule] | type[BudgetRule]) -> Response:
    actor = _actor()
    store: RuleStore = _services().traffic_rules
    if rule_id.startswith("config:"):
        raise IdentityError("rules from the config file are changed in the file", 400)
    stored = store.get(actor.tenant, rule_id)
    if not isinstance(stored.rule, kind):
        raise IdentityError(f"no such {'limit' if kind is LimitRule else 'budget'} {rule_id[:64]!r}", 404)
    require(actor, Permission.LIMITS_MANAGE, team_of(_services(), stored.rule, actor.tenant))
    return jsonify(describe(store.delete(actor.tenant, rule_id, _change())))
