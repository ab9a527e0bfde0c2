"""Limits and budgets set through the admin API and CLI: stored in the SQL metadata database, every
change in the audit log, read by every replica (cached for `refresh_s`, so a change reaches all of
them within that time)."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from proxy.db import Tenant, TrafficRule
from proxy.identity.directory import Change, IdentityError
from proxy.settings import BUDGET_PERIODS, LIMIT_SCOPES, BudgetRule, LimitRule


@dataclass(frozen=True, slots=True)
class Stored:
    id: str
    rule: LimitRule | BudgetRule


def _limit(row: TrafficRule, tenant: str) -> LimitRule:
    return LimitRule(row.scope, tenant, row.match, row.model, row.rpm, row.tpm, row.concurrent)


def _budget(row: TrafficRule, tenant: str) -> BudgetRule:
    return BudgetRule(row.scope, row.period, tenant, row.match, row.hard_usd, row.soft_usd)


def _whole(name: str, value: Any, low: int = 0, high: int = 10**9) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise IdentityError(f"field '{name}' must be an integer from {low} to {high}")
    return value


def _usd(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 10**9:
        raise IdentityError(f"field '{name}' must be a number of USD from 0 to 1e9")
    return float(value)


class RuleStore:
    def __init__(self, sessions: sessionmaker[Session], refresh_s: float = 2.0) -> None:
        self._sessions = sessions
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._loaded_at = float("-inf")
        self._rules: tuple[tuple[LimitRule, ...], tuple[BudgetRule, ...]] = ((), ())

    def current(self) -> tuple[tuple[LimitRule, ...], tuple[BudgetRule, ...]]:
        """Every tenant's stored limits and budgets, at most `refresh_s` old."""
        now = time.monotonic()
        if now - self._loaded_at < self._refresh_s:
            return self._rules
        with self._lock:
            if now - self._loaded_at >= self._refresh_s:
                stored = self.list()
                self._rules = (
                    tuple(s.rule for s in stored if isinstance(s.rule, LimitRule)),
                    tuple(s.rule for s in stored if isinstance(s.rule, BudgetRule)),
                )
                self._loaded_at = time.monotonic()
        return self._rules

    def list(self, tenant: str | None = None) -> list[Stored]:
        with self._sessions() as session:
            query = select(TrafficRule, Tenant.name).join(Tenant, TrafficRule.tenant_id == Tenant.id)
            if tenant is not None:
                query = query.where(Tenant.name == tenant)
            found = []
            for row, name in session.execute(query.order_by(TrafficRule.created_at)):
                found.append(Stored(row.id, _limit(row, name) if row.kind == "limit" else _budget(row, name)))
            return found

    def set_limit(self, tenant: str, fields: dict[str, Any], change: Change) -> Stored:
        scope = self._scope(fields)
        rule = LimitRule(
            scope,
            tenant,
            self._match(fields),
            str(fields.get("model") or "*")[:256],
            _whole("rpm", fields.get("rpm", 0)),
            _whole("tpm", fields.get("tpm", 0)),
            _whole("concurrent", fields.get("concurrent", 0), high=100_000),
        )
        if not (rule.rpm or rule.tpm or rule.concurrent):
            raise IdentityError("a limit needs rpm, tpm or concurrent")
        return self._put("limit", tenant, rule, "", change)

    def set_budget(self, tenant: str, fields: dict[str, Any], change: Change) -> Stored:
        scope = self._scope(fields)
        period = fields.get("period")
        if period not in BUDGET_PERIODS:
            raise IdentityError(f"field 'period' must be one of {', '.join(BUDGET_PERIODS)}")
        rule = BudgetRule(
            scope,
            period,
            tenant,
            self._match(fields),
            _usd("hard_usd", fields.get("hard_usd", 0)),
            _usd("soft_usd", fields.get("soft_usd", 0)),
        )
        if not (rule.hard_usd or rule.soft_usd):
            raise IdentityError("a budget needs hard_usd, soft_usd or both")
        if rule.hard_usd and rule.soft_usd > rule.hard_usd:
            raise IdentityError("soft_usd must not be above hard_usd")
        return self._put("budget", tenant, rule, period, change)

    def delete(self, tenant: str, rule_id: str, change: Change) -> Stored:
        with self._sessions.begin() as session:
            row, name = self._owned(session, tenant, rule_id)
            gone = Stored(row.id, _limit(row, name) if row.kind == "limit" else _budget(row, name))
            session.delete(row)
            change.record(
                session,
                tenant,
                f"{row.kind}.delete",
                f"{row.kind}:{row.id}",
                before=_describe(gone.rule),
            )
        self._loaded_at = float("-inf")
        return gone

    def get(self, tenant: str, rule_id: str) -> Stored:
        with self._sessions() as session:
            row, name = self._owned(session, tenant, rule_id)
            return Stored(row.id, _limit(row, name) if row.kind == "limit" else _budget(row, name))

    @staticmethod
    def _owned(session: Session, tenant: str, rule_id: str) -> tuple[TrafficRule, str]:
        found = session.execute(
            select(TrafficRule, Tenant.name)
            .join(Tenant, TrafficRule.tenant_id == Tenant.id)
            .where(TrafficRule.id == rule_id, Tenant.name == tenant)
        ).first()
        if found is None:
            raise IdentityError(f"no limit or budget {rule_id[:64]!r}", 404)
        return found[0], found[1]

    @staticmethod
    def _scope(fields: dict[str, Any]) -> str:
        scope = fields.get("scope")
        if scope not in LIMIT_SCOPES:
            raise IdentityError(f"field 'scope' must be one of {', '.join(LIMIT_SCOPES)}")
        return str(scope)

    @staticmethod
    def _match(fields: dict[str, Any]) -> str:
        match = fields.get("match")
        if fields.get("scope") == "tenant":
            return "*"
        if not isinstance(match, str) or not match or len(match) > 128:
            raise IdentityError("field 'match' must name the key id, team or project (1-128 characters)")
        return match

    def _put(
        self, kind: str, tenant: str, rule: LimitRule | BudgetRule, period: str, change: Change
    ) -> Stored:
        model = rule.model if isinstance(rule, LimitRule) else "*"
        with self._sessions.begin() as session:
            tenant_row = session.execute(select(Tenant).where(Tenant.name == tenant)).scalar_one_or_none()
            if tenant_row is None:
                raise IdentityError(f"no tenant {tenant!r}", 404)
            row = session.execute(
                select(TrafficRule).where(
                    TrafficRule.tenant_id == tenant_row.id,
                    TrafficRule.kind == kind,
                    TrafficRule.scope == rule.scope,
                    TrafficRule.match == rule.match,
                    TrafficRule.model == model,
                    TrafficRule.period == period,
                )
            ).scalar_one_or_none()
            before = None
            if row is None:
                row = TrafficRule(
                    id=uuid.uuid4().hex,
                    tenant_id=tenant_row.id,
                    kind=kind,
                    scope=rule.scope,
                    match=rule.match,
                    model=model,
                    period=period,
                )
                session.add(row)
            else:
                before = _describe(_limit(row, tenant) if kind == "limit" else _budget(row, tenant))
            if isinstance(rule, LimitRule):
                row.rpm, row.tpm, row.concurrent = rule.rpm, rule.tpm, rule.concurrent
            else:
                row.hard_usd, row.soft_usd = rule.hard_usd, rule.soft_usd
            session.flush()
            change.record(
                session,
                tenant,
                f"{kind}.set",
                f"{kind}:{row.id}",
                before=before,
                after=_describe(rule),
            )
            stored = Stored(row.id, replace(rule))
        self._loaded_at = float("-inf")
        return stored


def _describe(rule: LimitRule | BudgetRule) -> dict[str, Any]:
    if isinstance(rule, LimitRule):
        return {
            "scope": rule.scope,
            "match": rule.match,
            "model": rule.model,
            "rpm": rule.rpm,
            "tpm": rule.tpm,
            "concurrent": rule.concurrent,
        }
    return {
        "scope": rule.scope,
        "match": rule.match,
        "period": rule.period,
        "hard_usd": rule.hard_usd,
        "soft_usd": rule.soft_usd,
    }


def describe(stored: Stored, source: str = "api") -> dict[str, Any]:
    return {"id": stored.id, "source": source, **_describe(stored.rule)}
