"""Routing: a model name maps to the deployments (upstreams) that serve it; the router picks one,
fails over to the others, and keeps per-upstream health in this process.

Picking (`routing.strategy`, or per model `routing.models`):
  ordered     config order; later deployments are fallbacks (the default, and Warden's old behaviour)
  weighted    smooth weighted round-robin by `weight` (deterministic: weights 3 and 1 give 3:1 exactly)
  least_busy  fewest requests in flight, ties by the larger weight, then config order
  latency     lowest moving average (EWMA) of recent successful waits for the answer's head, with a
              small share of requests (`latency_explore`) sent elsewhere so a recovered deployment
              is measured again; a deployment never measured goes first

Resilience, per upstream: a cap on requests in flight (`max_in_flight`: at the cap it is skipped;
all at their caps is a 429 `upstreams_busy`); a circuit breaker that opens after consecutive failures
or a failure rate over the last calls, skips the upstream while open, lets one probe through after the
cooldown (doubling, up to a maximum, each time the probe fails) and closes on success; a 429 cools the
upstream down for its `retry-after` (it is then tried only when nothing else is left) without counting
as a failure. Failover: a 429, a 5xx, a timeout or a connection failure moves to the next deployment;
only connection failures are retried on the same upstream (`retries`, with jittered exponential
backoff); `routing.deadline_s` bounds the whole: no attempt starts, and no backoff sleeps, past it.
When the attempts run out, the last HTTP answer (a 429 with its retry-after, a 5xx) is returned, or
else the last failure raised. Streams fail over on their head only: once `Routed` is returned, the
bytes are the client's.

The router makes the calls itself and returns what happened (`Routed`), or raises `RoutingFailed` /
`RoutingRefused`: the forwarder never hands it a callback that writes into the exchange.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from time import monotonic, perf_counter, sleep, time
from typing import Generic, TypeVar

from proxy.settings import RoutingSettings
from proxy.upstreams.http import Upstream, UpstreamFailure, UpstreamReply, UpstreamStream

log = logging.getLogger(__name__)
T = TypeVar("T", UpstreamReply, UpstreamStream)

ORDERED, WEIGHTED, LEAST_BUSY, LATENCY = "ordered", "weighted", "least_busy", "latency"
DEFAULT_RETRY_AFTER_S = 1.0  # a 429 without a readable retry-after cools its upstream this long


@dataclass(frozen=True, slots=True)
class Routed(Generic[T]):
    """The answer that ends the routing, from `upstream`, after `waited_s` seconds of waiting on
    upstreams over every attempt (failed ones included): time that is not Warden's overhead.
    `attempts`: calls made, this one included."""

    upstream: str
    result: T
    waited_s: float
    attempts: int = 1


class RoutingFailed(Exception):
    """Every attempt failed; `failure` is the last one."""

    def __init__(self, failure: UpstreamFailure, waited_s: float, attempts: int = 1) -> None:
        super().__init__(str(failure))
        self.failure = failure
        self.waited_s = waited_s
        self.attempts = attempts


class RoutingRefused(Exception):
    """No deployment could take the request now (all at their in-flight caps, or all with an open
    circuit breaker); nothing was sent. `code`: upstreams_busy (429) or upstreams_unavailable (503)."""

    def __init__(self, status: int, code: str, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


class NoRoute(Exception):
    """None of the model's upstreams can serve this API (none speaks it, and none can be translated to)."""


# An upstream -> what to send it (relative path, body, client headers to pass on), or None when it
# cannot serve the request.
Plan = Callable[[Upstream], tuple[str, bytes, Mapping[str, str]] | None]


@dataclass(frozen=True, slots=True)
class Deployment:
    """An upstream as the router sees it: what it serves, and how it is balanced."""

    upstream: Upstream
    models: Sequence[str]
    retries: int = 0  # on connection failure, on this upstream, before failing over
    weight: int = 1
    max_in_flight: int = 0  # 0: no cap


class _Health:
    """One upstream's shared state; every field is read and written under the router's lock."""

    __slots__ = (
        "calls",
        "cap",
        "consecutive",
        "cool_until",
        "cooldown",
        "ewma",
        "failures",
        "in_flight",
        "name",
        "open",
        "open_until",
        "opened",
        "pos",
        "probing",
        "weight",
        "window",
    )

    def __init__(self, name: str, weight: int, cap: int, window: int, cooldown: float) -> None:
        self.name = name
        self.weight = weight
        self.cap = cap
        self.in_flight = 0
        self.ewma = -1.0  # seconds; < 0: never measured
        self.consecutive = 0
        self.window = bytearray(max(window, 1))  # the last calls, 1 for a failure (a ring)
        self.pos = 0
        self.calls = 0
        self.failures = 0
        self.open = False
        self.open_until = 0.0
        self.cooldown = cooldown
        self.probing = False
        self.cool_until = 0.0  # after a 429
        self.opened = 0  # times the breaker opened (metrics)


@dataclass(slots=True)
class _Member:
    upstream: Upstream
    retries: int
    health: _Health


@dataclass(slots=True)
class _Pool:
    strategy: str
    members: list[_Member]
    current: list[int]  # smooth weighted round-robin state, by member


class Router:
    def __init__(
        self,
        upstreams: Sequence[Deployment | tuple[Upstream, Sequence[str], int]],
        routing: RoutingSettings | None = None,
    ) -> None:
        """`upstreams`: deployments (or (upstream, models, retries) tuples), in config order."""
        self.routing = routing or RoutingSettings()
        r = self.routing
        self._lock = threading.Lock()
        self._random = random.Random()
        self._pools: dict[str, _Pool] = {}
        self._upstreams: list[Upstream] = []
        self._health: dict[str, _Health] = {}
        self.failovers = 0  # attempts that moved to another deployment (metrics)
        for item in upstreams:
            d = item if isinstance(item, Deployment) else Deployment(item[0], item[1], item[2])
            self._upstreams.append(d.upstream)
            health = _Health(
                d.upstream.name, d.weight, d.max_in_flight, r.breaker_window, r.breaker_cooldown_s
            )
            self._health[d.upstream.name] = health
            for model in d.models:
                pool = self._pools.get(model)
                if pool is None:
                    pool = self._pools[model] = _Pool(r.models.get(model, r.strategy), [], [])
                pool.members.append(_Member(d.upstream, d.retries, health))
                pool.current.append(0)

    def models(self) -> list[str]:
        return sorted(self._pools)

    def has(self, model: str) -> bool:
        return model in self._pools

    def health(self) -> dict[str, dict[str, float | int | bool]]:
        """A snapshot per upstream (for metrics and tests): in flight, breaker, cooling, latency."""
        now = monotonic()
        with self._lock:
            return {
                name: {
                    "in_flight": h.in_flight,
                    "open": h.open,
                    "opened": h.opened,
                    "cooling": h.cool_until > now,
                    "ewma_s": h.ewma,
                }
                for name, h in self._health.items()
            }

    def complete(self, model: str, request_id: str, plan: Plan) -> Routed[UpstreamReply]:
        """`plan(upstream)`: the path and body for that upstream (its own API's, translated if needed)."""
        return self._route(
            model,
            plan,
            lambda upstream, path, body, headers: upstream.complete(path, body, request_id, headers),
        )

    def stream(self, model: str, request_id: str, plan: Plan) -> Routed[UpstreamStream]:
        return self._route(
            model,
            plan,
            lambda upstream, path, body, headers: upstream.stream(path, body, request_id, headers),
        )

    # -- the attempts ----------------------------------------------------------------------------

    def _route(
        self, model: str, plan: Plan, call: Callable[[Upstream, str, bytes, Mapping[str, str]], T]
    ) -> Routed[T]:
        pool = self._pools[model]
        planned: list[tuple[int, tuple[str, bytes, Mapping[str, str]]]] = []
        for index, member in enumerate(pool.members):
            target = plan(member.upstream)
            if target is not None:
                planned.append((index, target))
        if not planned:
            raise NoRoute(model)
        r = self.routing
        deadline = monotonic() + r.deadline_s if r.deadline_s > 0 else math.inf
        tried = [False] * len(planned)
        attempts = 0
        waited = 0.0
        last_failure: UpstreamFailure | None = None
        last_reply: T | None = None
        last_reply_from = ""
        while True:
            if attempts and monotonic() >= deadline:
                break
            with self._lock:
                chosen = self._pick(pool, planned, tried, monotonic(), attempts == 0)
                if chosen >= 0 and attempts:
                    self.failovers += 1
            if chosen < 0:
                if attempts == 0:
                    raise self._refusal(pool, planned)
                break
            tried[chosen] = True
            index, (path, body, headers) = planned[chosen]
            member = pool.members[index]
            health = member.health
            retries_left = member.retries
            while True:
                attempts += 1
                started = perf_counter()
                try:
                    result = call(member.upstream, path, body, headers)
                except UpstreamFailure as failure:
                    waited += perf_counter() - started
                    last_failure = failure
                    log.warning("%s", failure)
                    with self._lock:
                        self._failed(health, monotonic())
                    if failure.kind != "unreachable" or retries_left <= 0:
                        break
                    retries_left -= 1
                    delay = self._backoff(member.retries - retries_left)
                    if monotonic() + delay >= deadline:
                        break
                    sleep(delay)  # never under the lock
                    with self._lock:
                        if not self._take_again(health):
                            break
                    continue
                except BaseException:
                    with self._lock:  # not the upstream's fault (a bug, an interrupt): free the slot
                        health.in_flight -= 1
                        health.probing = False
                    raise
                waited += result.wait_s
                status = result.status
                if status == 429 or status >= 500:
                    now = monotonic()
                    with self._lock:
                        if status == 429:
                            self._rate_limited(health, now, _retry_after(result.headers))
                        else:
                            self._failed(health, now)
                    log.warning("upstream %r answered %d; trying another", member.upstream.name, status)
                    if isinstance(last_reply, UpstreamStream):
                        last_reply.close()
                    last_reply, last_reply_from = result, member.upstream.name
                    break
                # Anything else is the upstream working (a 400 is the request's fault, not its own).
                with self._lock:
                    latency = result.head_s if isinstance(result, UpstreamReply) else 0.0
                    self._succeeded(health, latency or result.wait_s)
                    if not isinstance(result, UpstreamStream):
                        health.in_flight -= 1
                if isinstance(result, UpstreamStream):
                    result.on_close = self._releaser(health)
                if isinstance(last_reply, UpstreamStream):
                    last_reply.close()
                return Routed(member.upstream.name, result, waited, attempts)
        if last_reply is not None:
            return Routed(last_reply_from, last_reply, waited, attempts)
        assert last_failure is not None
        raise RoutingFailed(last_failure, waited, attempts)

    def _backoff(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2^(retry-1))]."""
        r = self.routing
        return self._random.uniform(0.0, min(r.backoff_max_s, r.backoff_s * (2 ** (retry - 1))))

    def _releaser(self, health: _Health) -> Callable[[], None]:
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if not released:
                    released = True
                    health.in_flight -= 1

        return release

    # -- shared state, always under self._lock --------------------------------------------------

    def _pick(
        self,
        pool: _Pool,
        planned: list[tuple[int, tuple[str, bytes, Mapping[str, str]]]],
        tried: list[bool],
        now: float,
        first: bool,
    ) -> int:
        """The position in `planned` of the deployment to call next, its slot taken; -1: none can."""
        strategy = pool.strategy
        members = pool.members
        best = -1
        best_cool = True
        best_a = best_b = 0.0
        any_ready = False
        for j, (index, _) in enumerate(planned):
            if tried[j]:
                continue
            h = members[index].health
            if not _usable(h, now):
                continue
            cool = h.cool_until > now
            any_ready = any_ready or not cool
            if strategy == LEAST_BUSY:
                a, b = float(h.in_flight), float(-h.weight)
            elif strategy == LATENCY:
                a, b = h.ewma, 0.0
            elif strategy == WEIGHTED:
                a, b = float(-h.weight), 0.0
            else:
                a = b = 0.0
            if (
                best < 0
                or (best_cool and not cool)
                or (cool == best_cool and (a < best_a or (a == best_a and b < best_b)))
            ):
                best, best_cool, best_a, best_b = j, cool, a, b
        if best < 0:
            return -1
        if first and strategy == WEIGHTED:
            best = self._smooth_weighted(pool, planned, tried, now, any_ready)
        elif (
            first
            and strategy == LATENCY
            and self.routing.latency_explore > 0
            and self._random.random() < self.routing.latency_explore
        ):
            best = self._explore(pool, planned, now, any_ready, best)
        h = members[planned[best][0]].health
        h.in_flight += 1
        if h.open:
            h.probing = True
        return best

    def _smooth_weighted(
        self,
        pool: _Pool,
        planned: list[tuple[int, tuple[str, bytes, Mapping[str, str]]]],
        tried: list[bool],
        now: float,
        ready_only: bool,
    ) -> int:
        """nginx's smooth weighted round-robin over the usable deployments: exact shares, spread out."""
        total = 0
        best = -1
        current = pool.current
        for j, (index, _) in enumerate(planned):
            h = pool.members[index].health
            if tried[j] or not _usable(h, now) or (ready_only and h.cool_until > now):
                continue
            current[index] += h.weight
            total += h.weight
            if best < 0 or current[index] > current[planned[best][0]]:
                best = j
        current[planned[best][0]] -= total
        return best

    def _explore(
        self,
        pool: _Pool,
        planned: list[tuple[int, tuple[str, bytes, Mapping[str, str]]]],
        now: float,
        ready_only: bool,
        fallback: int,
    ) -> int:
        """A uniformly random usable deployment (latency strategy's exploration)."""
        seen = 0
        chosen = fallback
        for j, (index, _) in enumerate(planned):
            h = pool.members[index].health
            if not _usable(h, now) or (ready_only and h.cool_until > now):
                continue
            seen += 1
            if self._random.random() * seen < 1.0:  # reservoir sampling, one pass
                chosen = j
        return chosen

    def _take_again(self, health: _Health) -> bool:
        """A slot on the same upstream for a retry, unless its breaker opened or it is at its cap."""
        if health.open or (health.cap and health.in_flight >= health.cap):
            return False
        health.in_flight += 1
        return True

    def _record(self, h: _Health, failed: int) -> None:
        window = h.window
        old = window[h.pos]
        window[h.pos] = failed
        h.pos = (h.pos + 1) % len(window)
        if h.calls < len(window):
            h.calls += 1
        h.failures += failed - old

    def _succeeded(self, h: _Health, latency_s: float) -> None:
        h.consecutive = 0
        if h.open:
            log.warning("upstream %r answered its probe: circuit closed", h.name)
            h.open = h.probing = False
            h.cooldown = self.routing.breaker_cooldown_s
            h.window[:] = bytes(len(h.window))
            h.pos = h.calls = h.failures = 0
        self._record(h, 0)
        alpha = self.routing.latency_alpha
        h.ewma = latency_s if h.ewma < 0 else alpha * latency_s + (1 - alpha) * h.ewma

    def _failed(self, h: _Health, now: float) -> None:
        r = self.routing
        h.in_flight -= 1
        h.consecutive += 1
        self._record(h, 1)
        if h.open:
            if not h.probing:  # a call that started before the circuit opened: it is open already
                return
            # The probe failed: open again, for longer.
            h.probing = False
            h.cooldown = min(h.cooldown * 2, r.breaker_max_cooldown_s)
            h.open_until = now + h.cooldown
            log.warning("upstream %r failed its probe: circuit open for %.1f s", h.name, h.cooldown)
            return
        if (r.breaker_failures and h.consecutive >= r.breaker_failures) or (
            r.breaker_failure_rate
            and h.calls >= r.breaker_min_calls
            and h.failures >= r.breaker_failure_rate * h.calls
        ):
            h.open = True
            h.opened += 1
            h.cooldown = r.breaker_cooldown_s
            h.open_until = now + h.cooldown
            log.warning(
                "upstream %r: %d failures in a row, %d of the last %d calls: circuit open for %.1f s",
                h.name,
                h.consecutive,
                h.failures,
                h.calls,
                h.cooldown,
            )

    def _rate_limited(self, h: _Health, now: float, retry_after_s: float) -> None:
        """A 429: the upstream is alive (no breaker count) but is left alone for a while."""
        h.in_flight -= 1
        h.cool_until = now + min(retry_after_s, self.routing.retry_after_max_s)
        if h.open:  # a probe that was rate limited: probe again once the cooling is over
            h.probing = False
            h.open_until = max(h.open_until, h.cool_until)

    def _refusal(
        self, pool: _Pool, planned: list[tuple[int, tuple[str, bytes, Mapping[str, str]]]]
    ) -> RoutingRefused:
        now = monotonic()
        with self._lock:
            busy = False
            reopen = math.inf
            for index, _ in planned:
                h = pool.members[index].health
                if h.cap and h.in_flight >= h.cap:
                    busy = True
                elif h.open:
                    reopen = min(reopen, h.open_until)
        if busy:
            return RoutingRefused(
                429, "upstreams_busy", "Every upstream serving this model is at its limit; retry shortly.", 1
            )
        wait = max(1, math.ceil(reopen - now)) if reopen != math.inf else 1
        return RoutingRefused(
            503,
            "upstreams_unavailable",
            "Every upstream serving this model is failing and resting; retry later.",
            wait,
        )

    def close(self) -> None:
        for upstream in self._upstreams:
            upstream.close()


def _usable(h: _Health, now: float) -> bool:
    """Not at its cap, and its breaker closed or due for its one probe."""
    if h.cap and h.in_flight >= h.cap:
        return False
    return not h.open or (not h.probing and now >= h.open_until)


def _retry_after(headers: Mapping[str, str]) -> float:
    """Seconds from a `retry-after` header (seconds or an HTTP date); a default when absent or unreadable."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return DEFAULT_RETRY_AFTER_S
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time(), 0.0)
    except (TypeError, ValueError, IndexError):
        return DEFAULT_RETRY_AFTER_S
