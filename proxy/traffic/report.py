"""Limits and budgets as people see them: the rules their scope covers, and each budget's spend.
Shared by the admin API and the cost dashboard."""

from __future__ import annotations

from typing import Any

from analytics.access import Actor, Permission, allows, scope_for
from proxy.identity.directory import IdentityError
from proxy.settings import BudgetRule, LimitRule
from proxy.traffic.gate import TrafficGate
from proxy.traffic.rules_store import RuleStore, Stored, describe


def team_of(services: Any, rule: LimitRule | BudgetRule, tenant: str) -> str | None:
    """The team a rule belongs to (None: tenant-wide), or IdentityError for a key of another tenant."""
    if rule.scope == "team":
        return rule.match
    if rule.scope == "key" and rule.match != "*":
        key = services.keys.get(rule.match)
        if key is None or key.tenant != tenant:
            raise IdentityError(f"no key {rule.match[:64]!r}", 404)
        return str(key.team)
    return None


def _visible(services: Any, actor: Actor, rule: LimitRule | BudgetRule, permission: Permission) -> bool:
    if rule.tenant not in ("*", actor.tenant):
        return False
    try:
        team = team_of(services, rule, actor.tenant)
    except IdentityError:
        return False
    return allows(actor, permission, team) if team is not None else allows(actor, permission)


def listing(
    services: Any, actor: Actor, kind: type[LimitRule] | type[BudgetRule]
) -> list[tuple[dict[str, Any], LimitRule | BudgetRule]]:
    """The limits (budgets) the actor may see: the config file's, then those set at run time."""
    gate: TrafficGate = services.traffic
    config: tuple[LimitRule | BudgetRule, ...] = (
        gate.config_limits if kind is LimitRule else gate.config_budgets
    )
    rows: list[tuple[dict[str, Any], LimitRule | BudgetRule]] = []
    for index, rule in enumerate(config):
        if _visible(services, actor, rule, Permission.LIMITS_READ):
            rows.append(
                ({**describe(Stored(f"config:{index}", rule), "config"), "tenant": rule.tenant}, rule)
            )
    store: RuleStore = services.traffic_rules
    for stored in store.list(actor.tenant):
        if isinstance(stored.rule, kind) and _visible(services, actor, stored.rule, Permission.LIMITS_READ):
            rows.append((describe(stored), stored.rule))
    return rows


def budget_report(services: Any, actor: Actor) -> list[dict[str, Any]]:
    """Each budget the actor may see with, for every team (key, project) it covers, the spend,
    open reservations and what remains in the current period."""
    gate: TrafficGate = services.traffic
    budgets = []
    for row, rule in listing(services, actor, BudgetRule):
        assert isinstance(rule, BudgetRule)
        usage = []
        for value in _subjects(services, actor, rule):
            state = gate.state_for(rule, actor.tenant, value)
            spent, reserved = gate.usage(state)
            hard = round(rule.hard_usd * 1_000_000)
            usage.append(
                {
                    rule.scope: value,
                    "period": state.period,
                    "spent_usd": spent / 1e6,
                    "reserved_usd": reserved / 1e6,
                    "remaining_usd": max(hard - spent - reserved, 0) / 1e6 if rule.hard_usd else None,
                    "over_soft": bool(rule.soft_usd) and spent > rule.soft_usd * 1_000_000,
                }
            )
        budgets.append({**row, "usage": usage})
    return budgets


def _subjects(services: Any, actor: Actor, rule: BudgetRule) -> list[str]:
    """The teams (keys, projects) a budget rule covers that the actor may see; `*` is each of them."""
    if rule.scope == "tenant":
        return [actor.tenant]
    scope = scope_for(actor, Permission.LIMITS_READ)
    keys = [k for k in services.keys.list() if k.tenant == actor.tenant and scope and scope.covers(k.team)]
    values = {
        "team": {k.team for k in keys},
        "key": {k.id for k in keys},
        "project": {k.project for k in keys},
    }
    found = sorted(v for v in values[rule.scope] if v)
    return found if rule.match == "*" else [v for v in found if v == rule.match]
