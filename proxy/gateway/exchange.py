"""The Exchange: one request's journey through Warden, from arrival to its logged event."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import perf_counter
from typing import TYPE_CHECKING, Any

from analytics.events import ExchangeEvent
from policies.engine import CompiledPolicy, Report
from policies.findings import Placeholders
from proxy.formats.base import Usage
from proxy.identity.keys import Principal
from proxy.settings import Price

if TYPE_CHECKING:
    from proxy.experiments.assign import Assignment
    from proxy.gateway.relay import RelayOutcome
    from proxy.prompts.use import PromptUse
    from proxy.traffic.gate import Ticket


@dataclass(frozen=True, slots=True)
class AppliedPolicy:
    """The policy at work on one exchange, its record of what it did, and the exchange's placeholders
    (the only copy of the values input masks replaced; it dies with the exchange)."""

    policy: CompiledPolicy
    report: Report
    placeholders: Placeholders
    # Whose texts these are (the tenant): the policy remembers clean texts per scope, never across.
    scope: str | None = None

    @property
    def guards_output(self) -> bool:
        """True when the answer must pass through the policy: output rules, or values to restore."""
        return (bool(self.placeholders) and self.policy.policy.restore) or self.policy.has_rules("output")


@dataclass(slots=True)
class Exchange:
    """One request, measured on its way: who, when, how long, what came back. The policy it runs under
    is fixed once selected (`applied`)."""

    route: str
    t0: float = field(default_factory=perf_counter)
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))
    request_id: uuid.UUID = field(default_factory=uuid.uuid4)
    principal: Principal | None = None
    model: str = ""
    streamed: bool = False
    upstream: str = ""
    attempts: int = 0  # upstream calls made (failovers and retries included); 0: none
    status: int = 0
    error_class: str = ""
    # Seconds spent waiting on the upstream, and on our own work after the response started.
    upstream_s: float = 0.0
    stream_work_s: float = 0.0
    head_overhead_s: float = 0.0
    ttft_s: float | None = None
    end_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    finish_reason: str = ""
    choices: int = 0
    # What the transcript holds (plaintext only in memory; sealed before it is written anywhere).
    subject: str = ""
    prompt: Any = None
    answer: Any = None
    # Fixed once the policy is selected; None until then (and for requests refused before it).
    applied: AppliedPolicy | None = None
    # What the request holds of its limits and budgets, settled when its row is recorded.
    ticket: Ticket | None = None
    # Served from the response cache (nothing spent upstream), and the x-warden-cache header's value
    # (hit, miss or bypass; empty when the policy does not cache).
    cache_hit: bool = False
    cache_status: str = ""
    # The registry prompt the request named (`warden.prompt`) and the version rendered into it.
    prompt_use: PromptUse | None = None
    # The running experiment the request took part in and the variant it got.
    assignment: Assignment | None = None

    def overhead_now(self) -> float:
        """Time in Warden so far, upstream waits excluded: the x-warden-overhead-ms figure."""
        return max(perf_counter() - self.t0 - self.upstream_s, 0.0)

    def take_outcome(self, seen: RelayOutcome) -> None:
        """What a stream relay saw: usage, the finish reason, choices and the answer's text."""
        if seen.usage is not None:
            self.prompt_tokens = seen.usage.prompt_tokens
            self.completion_tokens = seen.usage.completion_tokens
            self.cached_tokens = seen.usage.cached_tokens
        self.finish_reason = seen.finish_reason
        self.choices = seen.choices
        self.answer = seen.answer

    def take_usage(self, usage: Usage | None) -> None:
        """Token counts of an answer (None changes nothing)."""
        if usage is not None:
            self.prompt_tokens = usage.prompt_tokens
            self.completion_tokens = usage.completion_tokens
            self.cached_tokens = usage.cached_tokens

    def cost_micro_usd(self, price: Price | None, self_hosted: bool = False) -> int | None:
        """Integer micro-USD, or None when the model has no price: unknown is never $0. A self-hosted
        model without a price costs nothing per token, which is known: 0."""
        if price is None:
            return 0 if self_hosted else None
        cached = min(self.cached_tokens, self.prompt_tokens)
        cached_rate = price.cached_input if price.cached_input is not None else price.input
        total = (self.prompt_tokens - cached) * price.input + cached * cached_rate
        total += self.completion_tokens * price.output
        return round(total)

    def to_event(
        self,
        price: Price | None,
        subject_hash: str = "",
        retention_days: int = 0,
        refusal: bool = False,
        self_hosted: bool = False,
    ) -> ExchangeEvent:
        end = self.end_s if self.end_s is not None else perf_counter()
        latency = end - self.t0
        overhead = self.head_overhead_s + self.stream_work_s if self.streamed else latency - self.upstream_s
        p = self.principal
        cost = self.cost_micro_usd(price, self_hosted)
        # A cache hit spent nothing: what the call would have cost is recorded as saved.
        spent, saved = (0, cost or 0) if self.cache_hit else (cost, 0)
        return ExchangeEvent(
            tenant=p.tenant if p else "",
            team=p.team if p else "",
            project=p.project if p else "",
            api_key_id=p.key_id if p else "",
            request_id=self.request_id,
            ts=self.ts,
            route=self.route,
            model=self.model[:256],
            upstream=self.upstream,
            status=self.status,
            error_class=self.error_class,
            streamed=self.streamed,
            cache_hit=self.cache_hit,
            latency_ms=latency * 1000,
            ttft_ms=self.ttft_s * 1000 if self.ttft_s is not None else None,
            upstream_ms=self.upstream_s * 1000,
            overhead_ms=max(overhead, 0.0) * 1000,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cached_tokens=self.cached_tokens,
            cost_micro_usd=spent,
            finish_reason=self.finish_reason,
            choices=self.choices,
            subject_hash=subject_hash,
            retention_days=retention_days,
            refusal=refusal,
            self_hosted=self_hosted,
            attempts=min(self.attempts, 255),
            cost_saved_micro_usd=saved,
            prompt_name=self.prompt_use.name if self.prompt_use else "",
            prompt_version=self.prompt_use.version if self.prompt_use else 0,
            experiment=self.assignment.experiment if self.assignment else "",
            variant=self.assignment.variant if self.assignment else "",
            **self._policy_columns(),
        )

    def _policy_columns(self) -> dict[str, Any]:
        if self.applied is None:
            return {}
        report = self.applied.report
        summary = report.summary()
        return {
            "policy": report.policy,
            "decision": report.decision,
            "finding_stage": tuple(s for s, _, _, _, _ in summary),
            "finding_kind": tuple(k[:128] for _, k, _, _, _ in summary),
            "finding_action": tuple(a for _, _, a, _, _ in summary),
            "finding_count": tuple(n for _, _, _, n, _ in summary),
            "finding_score": tuple(float(v) for _, _, _, _, v in summary),
        }
