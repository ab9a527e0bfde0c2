"""Routing: a model name maps to its upstreams in config order; later ones are fallbacks.

The router makes the calls itself and returns what happened (`Routed`), or raises `RoutingFailed`:
the forwarder never hands it a callback that writes into the exchange.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Generic, TypeVar

from proxy.upstreams.http import Upstream, UpstreamFailure, UpstreamReply, UpstreamStream

log = logging.getLogger(__name__)
T = TypeVar("T", UpstreamReply, UpstreamStream)

# Upstream statuses that mean "this deployment is unwell, another may serve": worth a fallback.
FALLBACK_STATUSES = frozenset({500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Routed(Generic[T]):
    """The answer that ends the routing, from `upstream`, after `waited_s` seconds of waiting on
    upstreams over every attempt (failed ones included): time that is not Warden's overhead."""

    upstream: str
    result: T
    waited_s: float


class RoutingFailed(Exception):
    """Every attempt failed; `failure` is the last one."""

    def __init__(self, failure: UpstreamFailure, waited_s: float) -> None:
        super().__init__(str(failure))
        self.failure = failure
        self.waited_s = waited_s


class NoRoute(Exception):
    """None of the model's upstreams can serve this API (none speaks it, and none can be translated to)."""


# An upstream -> what to send it (relative path, body, client headers to pass on), or None when it
# cannot serve the request.
Plan = Callable[[Upstream], tuple[str, bytes, Mapping[str, str]] | None]


class Router:
    def __init__(self, upstreams: Sequence[tuple[Upstream, Sequence[str], int]]) -> None:
        """`upstreams`: (upstream, models it serves, retries on connection failure), in order."""
        self._routes: dict[str, list[tuple[Upstream, int]]] = {}
        self._upstreams = [u for u, _, _ in upstreams]
        for upstream, models, retries in upstreams:
            for model in models:
                self._routes.setdefault(model, []).append((upstream, retries))

    def models(self) -> list[str]:
        return sorted(self._routes)

    def has(self, model: str) -> bool:
        return model in self._routes

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

    def _route(
        self, model: str, plan: Plan, call: Callable[[Upstream, str, bytes, Mapping[str, str]], T]
    ) -> Routed[T]:
        """Call the model's upstreams until one answers well.

        Connection failures are retried on the same upstream (`retries` times), then the next
        upstream is tried; a timeout or a 5xx moves on without a retry (the upstream was reached
        and a retry would double the wait). The last failure is raised, or the last 5xx returned.
        """
        candidates = []
        for upstream, retries in self._routes[model]:
            planned = plan(upstream)
            if planned is not None:
                candidates.append((upstream, retries, planned))
        if not candidates:
            raise NoRoute(model)
        last_failure: UpstreamFailure | None = None
        waited = 0.0
        for index, (upstream, retries, (path, body, headers)) in enumerate(candidates):
            is_last = index == len(candidates) - 1
            for _ in range(retries + 1):
                started = perf_counter()
                try:
                    result = call(upstream, path, body, headers)
                except UpstreamFailure as failure:
                    waited += perf_counter() - started
                    last_failure = failure
                    log.warning("%s", failure)
                    if failure.kind == "unreachable":
                        continue
                    break
                waited += result.wait_s
                if result.status in FALLBACK_STATUSES and not is_last:
                    log.warning("upstream %r answered %d; falling back", upstream.name, result.status)
                    if isinstance(result, UpstreamStream):
                        result.close()
                    break
                return Routed(upstream.name, result, waited)
        assert last_failure is not None
        raise RoutingFailed(last_failure, waited)

    def close(self) -> None:
        for upstream in self._upstreams:
            upstream.close()
