"""Limits and budgets in the admin API: `GET|PUT /api/limits`, `DELETE /api/limits/<id>`, and the same
for `/api/budgets`, whose listing carries each budget's spend and what remains of it.

Rules from the config file are listed (`source: config`) but can only be changed in the file. A team
rule or a key's rule needs `limits:manage` in that team; project and tenant rules need it tenant-wide.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from analytics.access import AccessDenied, Actor, Permission, allows, require, scope_for
from proxy.errors import access_error
from proxy.identity.directory import Change, IdentityError
from proxy.identity.guard import actor_label, client_ip, deny, requires
from proxy.jsonbody import NotJson, parse_json
from proxy.settings import BudgetRule, LimitRule
from proxy.traffic.gate import TrafficGate
from proxy.traffic.rules_store import RuleStore, Stored, describe

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


def _team_of(rule: LimitRule | BudgetRule, tenant: str) -> str | None:
    """The team a rule belongs to (None: tenant-wide), or IdentityError for a key of another tenant."""
    if rule.scope == "team":
        return rule.match
    if rule.scope == "key" and rule.match != "*":
        key = _services().keys.get(rule.match)
        if key is None or key.tenant != tenant:
            raise IdentityError(f"no key {rule.match[:64]!r}", 404)
        return str(key.team)
    return None


def _visible(actor: Actor, rule: LimitRule | BudgetRule, permission: Permission) -> bool:
    if rule.tenant not in ("*", actor.tenant):
        return False
    try:
        team = _team_of(rule, actor.tenant)
    except IdentityError:
        return False
    return allows(actor, permission, team) if team is not None else allows(actor, permission)


def _listing(kind: type[LimitRule] | type[BudgetRule]) -> list[tuple[dict[str, Any], LimitRule | BudgetRule]]:
    actor = _actor()
    gate: TrafficGate = _services().traffic
    config: tuple[LimitRule | BudgetRule, ...] = (
        gate.config_limits if kind is LimitRule else gate.config_budgets
    )
    rows: list[tuple[dict[str, Any], LimitRule | BudgetRule]] = []
    for index, rule in enumerate(config):
        if _visible(actor, rule, Permission.LIMITS_READ):
            rows.append(
                ({**describe(Stored(f"config:{index}", rule), "config"), "tenant": rule.tenant}, rule)
            )
    store: RuleStore = _services().traffic_rules
    for stored in store.list(actor.tenant):
        if isinstance(stored.rule, kind) and _visible(actor, stored.rule, Permission.LIMITS_READ):
            rows.append((describe(stored), stored.rule))
    return rows


def _change() -> Change:
    actor = _actor()
    return Change(actor=actor_label(actor), tenant=actor.tenant, ip=client_ip())


def _check_manage(fields: dict[str, Any]) -> None:
    actor = _actor()
    scope, match = fields.get("scope"), fields.get("match")
    probe = LimitRule(str(scope), actor.tenant, str(match or "*"))
    team = _team_of(probe, actor.tenant) if scope in ("team", "key") and isinstance(match, str) else None
    require(actor, Permission.LIMITS_MANAGE, team)


@bp.get("/limits")
@requires(Permission.LIMITS_READ)
def list_limits() -> Response:
    return jsonify({"limits": [row for row, _ in _listing(LimitRule)]})


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
    gate: TrafficGate = _services().traffic
    actor = _actor()
    budgets = []
    for row, rule in _listing(BudgetRule):
        assert isinstance(rule, BudgetRule)
        usage = []
        for value in _subjects(actor, rule):
            spent, reserved = gate.usage(gate.state_for(rule, actor.tenant, value))
            hard = round(rule.hard_usd * 1_000_000)
            usage.append(
                {
                    rule.scope: value,
                    "period": gate.state_for(rule, actor.tenant, value).period,
                    "spent_usd": spent / 1e6,
                    "reserved_usd": reserved / 1e6,
                    "remaining_usd": max(hard - spent - reserved, 0) / 1e6 if rule.hard_usd else None,
                    "over_soft": bool(rule.soft_usd) and spent > rule.soft_usd * 1_000_000,
                }
            )
        budgets.append({**row, "usage": usage})
    return jsonify({"budgets": budgets})


def _subjects(actor: Actor, rule: BudgetRule) -> list[str]:
    """The teams (keys, projects) a budget rule covers that the actor may see; `*` is each of them."""
    if rule.scope == "tenant":
        return [actor.tenant]
    scope = scope_for(actor, Permission.LIMITS_READ)
    keys = [k for k in _services().keys.list() if k.tenant == actor.tenant and scope and scope.covers(k.team)]
    values = {
        "team": {k.team for k in keys},
        "key": {k.id for k in keys},
        "project": {k.project for k in keys},
    }
    found = sorted(v for v in values[rule.scope] if v)
    return found if rule.match == "*" else [v for v in found if v == rule.match]


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
    require(actor, Permission.LIMITS_MANAGE, _team_of(stored.rule, actor.tenant))
    return jsonify(describe(store.delete(actor.tenant, rule_id, _change())))
