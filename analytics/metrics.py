"""Prometheus metrics: event pipeline counters read from the sink, and Warden's own overhead."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# Sub-millisecond buckets: Warden's overhead target is about 1 ms.
OVERHEAD_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class _SinkCollector:
    def __init__(self, sink: Any) -> None:
        self._sink = sink

    def collect(self) -> Iterator[Any]:
        stats = self._sink.stats
        for name, value, help_text in (
            ("warden_events_queued", stats.queued, "Events emitted (written to the spool and queued)."),
            ("warden_events_inserted", stats.inserted, "Events inserted into ClickHouse from memory."),
            (
                "warden_events_spooled",
                stats.spooled,
                "Events that took the disk path (outage, full queue, restart).",
            ),
            ("warden_events_replayed", stats.replayed, "Events inserted into ClickHouse from the spool."),
            ("warden_events_lost", stats.lost, "Events lost: the disk refused them and ClickHouse was down."),
            ("warden_insert_failures", stats.failed_inserts, "Failed ClickHouse inserts."),
            ("warden_spool_write_errors", stats.spool_errors, "Spool writes the disk refused."),
        ):
            family = CounterMetricFamily(name, help_text)
            family.add_metric([], value)
            yield family
        gauge = GaugeMetricFamily("warden_spool_bytes", "Bytes of event records waiting in the spool.")
        gauge.add_metric([], self._sink.spool_bytes())
        yield gauge


class _RouterCollector:
    """Per upstream, in this process: requests in flight, circuit state, breaker openings; failovers."""

    def __init__(self, router: Any) -> None:
        self._router = router

    def collect(self) -> Iterator[Any]:
        health = self._router.health()
        in_flight = GaugeMetricFamily(
            "warden_upstream_in_flight", "Requests in flight to each upstream.", labels=["upstream"]
        )
        open_ = GaugeMetricFamily(
            "warden_upstream_circuit_open", "1 while the upstream's circuit is open.", labels=["upstream"]
        )
        opened = CounterMetricFamily(
            "warden_upstream_circuit_opens", "Times the upstream's circuit opened.", labels=["upstream"]
        )
        for name, state in health.items():
            in_flight.add_metric([name], state["in_flight"])
            open_.add_metric([name], 1 if state["open"] else 0)
            opened.add_metric([name], state["opened"])
        yield in_flight
        yield open_
        yield opened
        failovers = CounterMetricFamily(
            "warden_upstream_failovers", "Attempts moved to another deployment after a failure, 429 or 5xx."
        )
        failovers.add_metric([], self._router.failovers)
        yield failovers


class _PolicyCollector:
    def __init__(self, policies: Any) -> None:
        self._policies = policies

    def collect(self) -> Iterator[Any]:
        family = CounterMetricFamily(
            "warden_policy_reload_failures",
            "Policy file changes rejected (the previous policies stayed active).",
        )
        family.add_metric([], self._policies.reload_failures)
        yield family


class Metrics:
    """One registry per app, so several apps in one process (tests) never collide."""

    def __init__(self, sink: Any, policies: Any = None, router: Any = None) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_SinkCollector(sink))
        if policies is not None:
            self.registry.register(_PolicyCollector(policies))
        if router is not None:
            self.registry.register(_RouterCollector(router))
        self.overhead = Histogram(
            "warden_overhead_seconds",
            "Time spent in Warden per request, upstream waits excluded.",
            buckets=OVERHEAD_BUCKETS,
            registry=self.registry,
        )

    def observe_overhead(self, seconds: float) -> None:
        self.overhead.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
