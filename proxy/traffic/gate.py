"""The traffic gate: which limits and budgets a request falls under, its admission, its settlement.

A request is admitted once, before any policy work (a refused request costs Warden almost nothing),
and settled once, when its row is recorded, with its real tokens and cost. The forwarder keeps the
`Ticket` on the exchange; settling twice is a no-op.
"""

from __future__ import annotations

import functools
import itertools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from proxy.errors import ProxyError
from proxy.identity.keys import Principal
from proxy.settings import BudgetRule, LimitRule, Price, TrafficSettings
from proxy.traffic.counters import (
    Admission,
    Budget,
    Counters,
    CountersUnavailable,
    Rate,
    Settlement,
    Slot,
    retry_after_s,
)

log = logging.getLogger(__name__)

# The request fields that cap an answer's length, by API; none: the configured default.
MAX_TOKEN_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
# A token is about four bytes of English; a JSON body carries syntax besides its text, so a third of
# its bytes over-estimates the prompt's tokens. The real count replaces the estimate on settling.
BYTES_PER_TOKEN = 3
NO_HARD_LIMIT = 2**53  # a soft-only budget: tracked, never refusing
FLUSH_AFTER_S = 0.002  # the longest a finished request's settlement waits for an admission to ride on
# spend so far of (scope, tenant, value, since): micro-USD, from the request log
SpendSource = Callable[[str, str, str, datetime], int]


@dataclass(frozen=True, slots=True)
class BudgetState:
    """One budget as it applies to one caller: for `GET /api/budgets` and soft flags."""

    rule: BudgetRule
    subject: str
    period: str
    budget: Budget


@dataclass(slots=True)
class Ticket:
    """What one admitted request holds: to settle when its row is recorded."""

    rates: list[tuple[Rate, str]]  # with "requests" | "tokens"
    slots: list[Slot]
    budgets: list[BudgetState]
    token: str
    estimated_tokens: int
    reserved: int
    headers: dict[str, str] = field(default_factory=dict)
    soft: list[str] = field(default_factory=list)  # soft thresholds this request went over
    settled: bool = False


@functools.lru_cache(maxsize=65536)
def _key(*parts: str) -> str:
    # Cached: the same few keys recur on every request, and quoting them costs more than the rest.
    return ":".join(quote(part, safe="") for part in parts)


def _matches(rule: LimitRule | BudgetRule, principal: Principal, model: str | None) -> str | None:
    """The scope's value for `principal` if `rule` applies to it, else None."""
    if rule.tenant not in ("*", principal.tenant):
        return None
    value = {
        "key": principal.key_id,
        "team": principal.team,
        "project": principal.project,
        "tenant": principal.tenant,
    }[rule.scope]
    if rule.match not in ("*", value):
        return None
    if model is not None and isinstance(rule, LimitRule) and rule.model not in ("*", model):
        return None
    return value


def period_of(period: str, now: datetime) -> tuple[str, datetime, int]:
    """(period id, its start, seconds to keep its state) for a budget period at `now` (UTC)."""
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y-%m-%d"), start, 3 * 86400
    if period == "month":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y-%m"), start, 64 * 86400
    return "total", datetime(1970, 1, 1, tzinfo=UTC), 0


def period_end(period: str, start: datetime) -> datetime | None:
    if period == "day":
        return start + timedelta(days=1)
    if period == "month":
        return (start + timedelta(days=32)).replace(day=1)
    return None


def _reset(seconds: float) -> str:
    """OpenAI's reset format: 20ms, 1s, 6m0s."""
    if seconds < 1:
        return f"{max(int(seconds * 1000), 1)}ms"
    whole = int(seconds + 0.999)
    minutes, secs = divmod(whole, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


class TrafficGate:
    def __init__(
        self,
        limits: tuple[LimitRule, ...],
        budgets: tuple[BudgetRule, ...],
        settings: TrafficSettings,
        counters: Counters,
        spend_source: SpendSource | None = None,
        stored: Callable[[], tuple[tuple[LimitRule, ...], tuple[BudgetRule, ...]]] | None = None,
    ) -> None:
        self.config_limits = limits
        self.config_budgets = budgets
        self._stored = stored
        self.settings = settings
        self.counters = counters
        self.spend_source = spend_source
        self._seed_lock = threading.Lock()
        # Settlements waiting to ride along with the next admission (Redis: one round trip for both),
        # or to be sent by the flusher within FLUSH_AFTER_S when no admission comes.
        self._pending: list[Settlement] = []
        self._pending_lock = threading.Lock()
        # Request tokens unique across processes and replicas without a uuid4 (a getrandom call) each.
        self._token_prefix = secrets.token_hex(8)
        self._serial = itertools.count()
        self._wake = threading.Event()
        self._closed = False
        self._flusher: threading.Thread | None = None
        if counters.deferred:
            self._flusher = threading.Thread(target=self._flush_loop, name="warden-settle", daemon=True)
            self._flusher.start()

    @property
    def limits(self) -> tuple[LimitRule, ...]:
        """The config file's limits, then those set through the admin API (at most seconds old)."""
        return self.config_limits + (self._stored()[0] if self._stored is not None else ())

    @property
    def budget_rules(self) -> tuple[BudgetRule, ...]:
        return self.config_budgets + (self._stored()[1] if self._stored is not None else ())

    # -- what applies --------------------------------------------------------------------------

    def budgets_for(self, principal: Principal, now: datetime | None = None) -> list[BudgetState]:
        found = []
        for rule in self.budget_rules:
            value = _matches(rule, principal, None)
            if value is not None:
                found.append(self.state_for(rule, principal.tenant, value, now))
        return found

    @staticmethod
    def state_for(rule: BudgetRule, tenant: str, value: str, now: datetime | None = None) -> BudgetState:
        """The budget `rule` sets for one key (team, project; the tenant itself) in this period."""
        period, _, ttl = period_of(rule.period, now or datetime.now(UTC))
        subject = tenant if rule.scope == "tenant" else f"{tenant}/{value}"
        hard = round(rule.hard_usd * 1_000_000) if rule.hard_usd else NO_HARD_LIMIT
        key = _key("budget", rule.scope, tenant, value, period)
        return BudgetState(rule, subject, period, Budget(key, hard, ttl))

    def _limits_for(
        self, principal: Principal, model: str, tokens: int
    ) -> tuple[list[tuple[Rate, str]], list[Slot]]:
        rates: list[tuple[Rate, str]] = []
        slots: list[Slot] = []
        for rule in self.limits:
            value = _matches(rule, principal, model)
            if value is None:
                continue
            base = ("rate", rule.scope, principal.tenant, value, rule.model)
            if rule.rpm:
                rates.append((Rate(_key(*base, "rpm"), rule.rpm, 1.0), "requests"))
            if rule.tpm:
                rates.append((Rate(_key(*base, "tpm"), rule.tpm, float(tokens)), "tokens"))
            if rule.concurrent:
                slots.append(
                    Slot(_key("slots", rule.scope, principal.tenant, value, rule.model), rule.concurrent)
                )
        return rates, slots

    # -- admission -----------------------------------------------------------------------------

    def admit(
        self,
        principal: Principal,
        model: str,
        payload: Mapping[str, Any],
        body_bytes: int,
        price: Price | None,
        free: bool,
    ) -> Ticket | None:
        """The request's ticket, or None when nothing applies; raises ProxyError (429, 403, 503) when
        a limit or budget refuses it."""
        answer_cap = next(
            (v for f in MAX_TOKEN_FIELDS if isinstance(v := payload.get(f), int) and not isinstance(v, bool)),
            self.settings.default_max_tokens,
        )
        prompt_tokens = body_bytes // BYTES_PER_TOKEN + 1
        tokens = prompt_tokens + max(answer_cap, 0)
        rates, slots = self._limits_for(principal, model, tokens)
        budgets = self.budgets_for(principal)
        if not (rates or slots or budgets):
            return None
        amount = 0
        hard = any(b.budget.hard < NO_HARD_LIMIT for b in budgets)
        if price is None and not free and hard and self.settings.unpriced == "refuse":
            raise ProxyError(
                403,
                f"The model '{model}' has no price, and this key is under a hard budget: "
                "Warden cannot reserve its cost. Give the model a price in `prices`.",
                type="permission_error",
                param="model",
                code="unpriced_model_under_budget",
            )
        if budgets and price is not None:
            amount = round(prompt_tokens * price.input + max(answer_cap, 0) * price.output)
        for rate, _ in rates:
            if rate.cost > rate.limit:  # a tokens limit the request could never fit in
                raise ProxyError(
                    429,
                    f"Request too large: it may use up to {int(rate.cost)} tokens (prompt estimate plus "
                    f"max_tokens), more than the limit of {rate.limit} tokens per minute. Lower max_tokens.",
                    type="tokens",
                    code="rate_limit_exceeded",
                    error_class="rate_limited_tokens",
                )
        token = f"{self._token_prefix}{next(self._serial):x}"
        admission = self._admit(rates, slots, budgets, token, amount)
        if admission is None:
            return None  # the shared state is down and the settings let requests through
        if admission.refused is not None:
            raise self._refusal(admission.refused, rates, slots, budgets)
        ticket = Ticket(rates, slots, budgets, token, tokens, amount)
        ticket.headers = self._headers(rates, admission)
        for state in budgets:
            if state.rule.soft_usd:
                spent, reserved = self._usage(state.budget)
                if spent + reserved > state.rule.soft_usd * 1_000_000:
                    ticket.soft.append(f"{state.rule.scope}:{state.rule.period}")
        return ticket

    def _admit(
        self,
        rates: list[tuple[Rate, str]],
        slots: list[Slot],
        budgets: list[BudgetState],
        token: str,
        amount: int,
    ) -> Admission | None:
        plain_rates = [rate for rate, _ in rates]
        plain_budgets = [state.budget for state in budgets]
        pending = self._take_pending()
        try:
            for _ in range(len(budgets) + 1):
                admission = self.counters.admit(
                    plain_rates, slots, plain_budgets, token, amount, self.settings.lease_s, pending
                )
                pending = []
                if admission.refused is None or admission.refused[0] != "seed":
                    return admission
                self._seed(budgets[admission.refused[1]])
            raise CountersUnavailable("budgets could not be seeded")
        except CountersUnavailable as exc:
            refuse = (budgets and self.settings.redis_down_budgets == "refuse") or (
                (rates or slots) and self.settings.redis_down_limits == "refuse"
            )
            log.warning(
                "limits and budgets unavailable (%s): %s", exc, "refusing" if refuse else "letting through"
            )
            if refuse:
                raise ProxyError(
                    503,
                    "Warden cannot check this key's limits and budgets right now; try again shortly.",
                    type="server_error",
                    code="limits_unavailable",
                    headers={"retry-after": "5"},
                ) from None
            return None

    def _seed(self, state: BudgetState) -> None:
        """A budget with no recorded spend (a fresh Redis, a restarted process) starts from what the
        request log says was spent in its period, not from zero."""
        with self._seed_lock:
            _, start, _ = period_of(state.rule.period, datetime.now(UTC))
            spent = 0
            if self.spend_source is not None:
                tenant, _, value = state.subject.partition("/")
                try:
                    spent = self.spend_source(state.rule.scope, tenant, value or tenant, start)
                except Exception as exc:
                    # Unknown spend is not zero spend: decided like an unreachable Redis.
                    raise CountersUnavailable(f"request log: {type(exc).__name__}") from None
            self.counters.seed(state.budget, spent)

    def _usage(self, budget: Budget) -> tuple[int, int]:
        try:
            return self.counters.usage(budget)
        except CountersUnavailable:
            return 0, 0

    def usage(self, state: BudgetState) -> tuple[int, int]:
        """(spent, reserved) in micro-USD, seeding a budget nobody has used since the start."""
        try:
            self.flush()  # this process's finished requests count before the figures are read
            spent, reserved = self.counters.usage(state.budget)
            if spent == 0 and reserved == 0:
                self._seed(state)
                spent, reserved = self.counters.usage(state.budget)
        except CountersUnavailable:
            raise ProxyError(
                503, "Budgets cannot be read right now.", type="server_error", code="limits_unavailable"
            ) from None
        return spent, reserved

    def _refusal(
        self,
        refused: tuple[str, int, float],
        rates: list[tuple[Rate, str]],
        slots: list[Slot],
        budgets: list[BudgetState],
    ) -> ProxyError:
        what, index, detail = refused
        if what == "rate":
            rate, kind = rates[index]
            wait = retry_after_s(detail)
            return ProxyError(
                429,
                f"Rate limit reached for {kind}: {rate.limit} {kind} per minute. Try again in {wait} s.",
                type=kind,
                code="rate_limit_exceeded",
                error_class=f"rate_limited_{kind}",
                headers={
                    "retry-after": str(wait),
                    f"x-ratelimit-limit-{kind}": str(rate.limit),
                    f"x-ratelimit-remaining-{kind}": "0",
                    f"x-ratelimit-reset-{kind}": _reset(detail),
                },
            )
        if what == "slot":
            slot = slots[index]
            return ProxyError(
                429,
                f"Too many requests at once: at most {slot.limit} may run concurrently. Try again shortly.",
                type="requests",
                code="concurrency_limit_exceeded",
                error_class="concurrency_limited",
                headers={"retry-after": "1"},
            )
        state = budgets[index]
        _, start, _ = period_of(state.rule.period, datetime.now(UTC))
        end = period_end(state.rule.period, start)
        headers = {}
        if end is not None:
            headers["retry-after"] = str(retry_after_s((end - datetime.now(UTC)).total_seconds()))
        period = "in total" if state.rule.period == "total" else f"per {state.rule.period}"
        return ProxyError(
            429,
            f"Budget exceeded: the {state.rule.scope} budget of ${state.rule.hard_usd:g} {period} "
            f"is spent or reserved by requests in flight (${detail / 1e6:.4f}).",
            type="insufficient_quota",
            code="budget_exceeded",
            error_class="budget_exceeded",
            headers=headers,
        )

    @staticmethod
    def _headers(rates: list[tuple[Rate, str]], admission: Admission) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers for the tightest requests and tokens limits."""
        headers: dict[str, str] = {}
        tightest: dict[str, tuple[int, float, int]] = {}
        for (rate, kind), (remaining, reset) in zip(rates, admission.rates, strict=True):
            if kind not in tightest or remaining < tightest[kind][0]:
                tightest[kind] = (remaining, reset, rate.limit)
        for kind, (remaining, reset, limit) in tightest.items():
            headers[f"x-ratelimit-limit-{kind}"] = str(limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(remaining)
            headers[f"x-ratelimit-reset-{kind}"] = _reset(reset)
        return headers

    # -- settlement ----------------------------------------------------------------------------

    def settle(self, ticket: Ticket, tokens: int, cost_micro_usd: int) -> None:
        """Release the slots and reservations and count what was really used (idempotent)."""
        if ticket.settled:
            return
        ticket.settled = True
        corrections = [
            (rate, float(tokens) - ticket.estimated_tokens if kind == "tokens" else 0.0)
            for rate, kind in ticket.rates
        ]
        corrections = [(rate, units) for rate, units in corrections if units]
        if not (corrections or ticket.slots or ticket.budgets):
            return  # requests-per-minute only: nothing to give back, no round trip
        settlement = Settlement(
            tuple(corrections),
            tuple(ticket.slots),
            tuple(state.budget for state in ticket.budgets),
            ticket.token,
            cost_micro_usd,
        )
        if not self.counters.deferred:
            self._send([settlement])
            return
        # Off the request path: the next admission carries it (in its own round trip), or the flusher
        # sends it within FLUSH_AFTER_S. Another replica sees the slot free that much later.
        with self._pending_lock:
            self._pending.append(settlement)
        self._wake.set()

    def _take_pending(self) -> list[Settlement]:
        with self._pending_lock:
            taken, self._pending = self._pending, []
        return taken

    def _send(self, settlements: list[Settlement]) -> None:
        try:
            self.counters.settle_many(settlements)
        except CountersUnavailable as exc:
            # The slots and reservations lapse with their lease; the spend of these requests is lost.
            log.warning("could not settle %d requests' limits and budgets (%s)", len(settlements), exc)

    def flush(self) -> None:
        """Send every waiting settlement now."""
        pending = self._take_pending()
        if pending:
            self._send(pending)

    def _flush_loop(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            time.sleep(FLUSH_AFTER_S)  # an admission arriving meanwhile takes them along for free
            self.flush()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._flusher is not None:
            self._flusher.join(2)
        self.flush()
        self.counters.close()
