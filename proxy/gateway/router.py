"""Routing: a model name maps to its upstreams in config order; later ones are fallbacks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from proxy.upstreams.http import Upstream, UpstreamFailure

log = logging.getLogger(__name__)
T = TypeVar("T")

# Upstream statuses that mean "this deployment is unwell, another may serve": worth a fallback.
FALLBACK_STATUSES = frozenset({500, 502, 503, 504})


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

    def call(
        self, model: str, attempt: Callable[[Upstream], T], status_of: Callable[[T], int]
    ) -> tuple[Upstream, T]:
        """Run `attempt` on the model's upstreams until one answers well.

        Connection failures are retried on the same upstream (`retries` times), then the next
        upstream is tried; a timeout or a 5xx moves on without a retry (the upstream was reached
        and a retry would double the wait). The last failure is raised, or the last 5xx returned.
        """
        candidates = self._routes[model]
        last_failure: UpstreamFailure | None = None
        for index, (upstream, retries) in enumerate(candidates):
            is_last = index == len(candidates) - 1
            for _ in range(retries + 1):
                try:
                    result = attempt(upstream)
                except UpstreamFailure as failure:
                    last_failure = failure
                    log.warning("%s", failure)
                    if failure.kind == "unreachable":
                        continue
                    break
                if status_of(result) in FALLBACK_STATUSES and not is_last:
                    log.warning("upstream %r answered %d; falling back", upstream.name, status_of(result))
                    _discard(result)
                    break
                return upstream, result
        assert last_failure is not None
        raise last_failure

    def close(self) -> None:
        for upstream in self._upstreams:
            upstream.close()


def _discard(result: object) -> None:
    close = getattr(result, "close", None)
    if callable(close):
        close()
