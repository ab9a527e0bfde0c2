"""Load balancing and resilience among a model's deployments: the router against fake upstreams on
loopback (real HTTP), then through a live Warden for what the client and the request row see."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.gateway.router import Deployment, Routed, Router, RoutingFailed, RoutingRefused
from proxy.settings import RoutingSettings, UpstreamSettings
from proxy.upstreams.fake import FakeUpstream
from proxy.upstreams.http import HttpUpstream, UpstreamReply
from tests.support import LiveWarden, make_settings

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
# No breaker, no exploration unless a test asks: every test sees only what it sets up.
QUIET = RoutingSettings(breaker_failures=0, breaker_failure_rate=0, latency_explore=0, backoff_s=0.01)


def plan(_upstream: Any) -> tuple[str, bytes, dict[str, str]]:
    return "chat/completions", BODY, {}


@pytest.fixture
def fakes() -> Iterator[list[FakeUpstream]]:
    servers = [FakeUpstream().start() for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


def dead_url() -> str:
    with socket.socket() as probe:  # a port with nothing listening: connection refused
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/v1"


def deployment(name: str, url: str, **kwargs: Any) -> Deployment:
    settings = UpstreamSettings(name=name, type="openai", base_url=url, models=("m",), connect_timeout=1)
    return Deployment(HttpUpstream(settings), ("m",), **kwargs)


def make_router(fakes: list[FakeUpstream], routing: RoutingSettings = QUIET, **per: dict[str, Any]) -> Router:
    """Deployments "a" and "b" on the two fakes, in that order; `a={...}` sets a's Deployment fields."""
    return Router(
        [
            deployment(name, fake.base_url, **per.get(name, {}))
            for name, fake in zip("ab", fakes, strict=True)
        ],
        routing,
    )


def complete(router: Router) -> Routed[UpstreamReply]:
    return router.complete("m", "req", plan)


def test_weighted_splits_traffic_exactly_by_weight(fakes: list[FakeUpstream]) -> None:
    router = make_router(fakes, replace(QUIET, strategy="weighted"), a={"weight": 3}, b={"weight": 1})
    served = [complete(router).upstream for _ in range(200)]
    assert (served.count("a"), served.count("b")) == (150, 50)
    assert (len(fakes[0].requests), len(fakes[1].requests)) == (150, 50)
    # Smooth: b's turns are spread out, never two in a row.
    assert "bb" not in "".join(served) and served[:4].count("b") == 1
    ordered = make_router(fakes, QUIET, a={"weight": 3}, b={"weight": 1})
    assert {complete(ordered).upstream for _ in range(10)} == {"a"}  # the default: config order
    router.close()
    ordered.close()


def test_least_busy_prefers_the_idle_upstream(fakes: list[FakeUpstream]) -> None:
    fakes[0].behaviour.delay_ms = 700
    router = make_router(fakes, replace(QUIET, strategy="least_busy"))
    held = threading.Thread(target=complete, args=(router,))
    held.start()  # both idle: a, the first, takes it and holds it
    deadline = time.monotonic() + 5
    while router.health()["a"]["in_flight"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    served = [complete(router).upstream for _ in range(5)]
    held.join()
    assert served == ["b"] * 5
    assert router.health()["a"]["in_flight"] == 0 and len(fakes[0].requests) == 1
    router.close()


def test_latency_prefers_the_fast_upstream(fakes: list[FakeUpstream]) -> None:
    fakes[0].behaviour.delay_ms = 60
    router = make_router(fakes, replace(QUIET, strategy="latency"))
    served = [complete(router).upstream for _ in range(20)]
    # Each unmeasured deployment is tried once, then the faster one takes everything.
    assert served[:2] == ["a", "b"] and served[2:] == ["b"] * 18
    health = router.health()
    assert float(health["a"]["ewma_s"]) > 0.05 and float(health["b"]["ewma_s"]) < 0.05
    # Exploration sends some traffic to the slow one again, so a recovered deployment is seen.
    exploring = make_router(fakes, replace(QUIET, strategy="latency", latency_explore=0.5))
    while min(float(h["ewma_s"]) for h in exploring.health().values()) < 0:  # until both are measured
        complete(exploring)
    assert "a" in {complete(exploring).upstream for _ in range(40)}
    router.close()
    exploring.close()


def test_breaker_opens_skips_probes_and_closes(fakes: list[FakeUpstream]) -> None:
    routing = replace(QUIET, breaker_failures=3, breaker_cooldown_s=0.2, breaker_max_cooldown_s=1)
    router = make_router(fakes, routing)
    a = fakes[0]
    a.behaviour.fail_status = 500
    for _ in range(3):  # each fails over to b
        routed = complete(router)
        assert (routed.upstream, routed.result.status, routed.attempts) == ("b", 200, 2)
    assert router.health()["a"]["open"] is True and router.health()["a"]["opened"] == 1
    routed = complete(router)  # open: a is not called at all
    assert (routed.upstream, routed.attempts, len(a.requests)) == ("b", 1, 3)
    time.sleep(0.22)
    routed = complete(router)  # the probe: still failing, so open again for twice as long
    assert (routed.upstream, routed.attempts, len(a.requests)) == ("b", 2, 4)
    time.sleep(0.22)
    assert complete(router).attempts == 1 and len(a.requests) == 4  # 0.4 s this time
    a.behaviour.fail_status = 0
    time.sleep(0.2)
    routed = complete(router)  # the probe succeeds: closed
    assert (routed.upstream, routed.attempts, len(a.requests)) == ("a", 1, 5)
    assert router.health()["a"]["open"] is False
    assert [complete(router).upstream for _ in range(3)] == ["a"] * 3
    router.close()


def test_breaker_opens_on_a_failure_rate_and_refuses_when_nothing_is_left(fakes: list[FakeUpstream]) -> None:
    routing = replace(QUIET, breaker_failure_rate=0.5, breaker_window=4, breaker_min_calls=4)
    router = Router([deployment("a", fakes[0].base_url)], routing)
    for status in (500, 0, 500):  # 2 of 3: under the minimum number of calls
        fakes[0].behaviour.fail_status = status
        complete(router)
    assert router.health()["a"]["open"] is False
    fakes[0].behaviour.fail_status = 0
    complete(router)
    assert router.health()["a"]["open"] is False  # 2 of 4 failed, but a success never opens it
    fakes[0].behaviour.fail_status = 500
    assert complete(router).result.status == 500  # the last 4: 0, 1, 0, 1 failed -> 50%: open
    assert router.health()["a"]["open"] is True
    with pytest.raises(RoutingRefused) as refused:
        complete(router)
    assert (refused.value.status, refused.value.code) == (503, "upstreams_unavailable")
    assert refused.value.retry_after_s == 30  # the default cooldown, rounded up
    assert len(fakes[0].requests) == 5  # the refused request never reached it
    router.close()


def test_429_fails_over_and_cools_the_upstream(fakes: list[FakeUpstream]) -> None:
    fakes[0].behaviour.fail_status = 429
    fakes[0].behaviour.retry_after = "20"
    router = make_router(fakes)
    routed = complete(router)
    assert (routed.upstream, routed.result.status, routed.attempts) == ("b", 200, 2)
    health = router.health()["a"]
    assert health["cooling"] is True and health["open"] is False  # a 429 is not a failure
    routed = complete(router)  # a rests for its retry-after: b directly
    assert (routed.upstream, routed.attempts, len(fakes[0].requests)) == ("b", 1, 1)
    router.close()


def test_every_deployment_429_returns_the_last_429(fakes: list[FakeUpstream]) -> None:
    for fake, after in zip(fakes, ("7", "9"), strict=True):
        fake.behaviour.fail_status = 429
        fake.behaviour.retry_after = after
    router = make_router(fakes)
    routed = complete(router)
    assert (routed.upstream, routed.result.status, routed.attempts) == ("b", 429, 2)
    assert routed.result.headers["retry-after"] == "9"
    router.close()


def test_5xx_fails_over_and_the_last_5xx_is_returned(fakes: list[FakeUpstream]) -> None:
    fakes[0].behaviour.fail_status = 503
    router = make_router(fakes)
    assert (complete(router).upstream, complete(router).attempts) == ("b", 2)
    fakes[1].behaviour.fail_status = 502
    routed = complete(router)
    assert (routed.upstream, routed.result.status, routed.attempts) == ("b", 502, 2)
    router.close()


def test_connection_failures_are_retried_with_backoff_then_fail_over(fakes: list[FakeUpstream]) -> None:
    router = Router(
        [deployment("dead", dead_url(), retries=2), deployment("b", fakes[1].base_url)],
        replace(QUIET, backoff_s=0.01, backoff_max_s=0.02),
    )
    routed = complete(router)
    assert (routed.upstream, routed.attempts) == ("b", 4)  # dead: 1 + 2 retries, then b
    router.close()


def test_the_deadline_stops_retries() -> None:
    routing = replace(QUIET, deadline_s=0.3, backoff_s=0.2, backoff_max_s=0.2)
    router = Router([deployment("dead", dead_url(), retries=50)], routing)
    started = time.monotonic()
    with pytest.raises(RoutingFailed) as failed:
        complete(router)
    elapsed = time.monotonic() - started
    assert elapsed < 0.45, elapsed  # 50 retries at up to 0.2 s each would take ~5 s
    assert 1 <= failed.value.attempts < 20 and failed.value.failure.kind == "unreachable"
    router.close()


def test_in_flight_cap_skips_then_refuses(fakes: list[FakeUpstream]) -> None:
    fakes[0].behaviour.delay_ms = 500
    router = make_router(fakes, QUIET, a={"max_in_flight": 1})
    held = threading.Thread(target=complete, args=(router,))
    held.start()
    deadline = time.monotonic() + 5
    while router.health()["a"]["in_flight"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert complete(router).upstream == "b"  # a is at its cap: skipped
    held.join()
    only_a = Router([deployment("a", fakes[0].base_url, max_in_flight=1)], QUIET)
    held = threading.Thread(target=complete, args=(only_a,))
    held.start()
    while only_a.health()["a"]["in_flight"] != 1:
        time.sleep(0.005)
    with pytest.raises(RoutingRefused) as refused:
        complete(only_a)
    assert (refused.value.status, refused.value.code, refused.value.retry_after_s) == (
        429,
        "upstreams_busy",
        1,
    )
    held.join()
    assert only_a.health()["a"]["in_flight"] == 0
    for r in (router, only_a):
        r.close()


def test_streams_fail_over_on_their_head_and_hold_their_slot_until_closed(fakes: list[FakeUpstream]) -> None:
    fakes[0].behaviour.fail_status = 503
    router = make_router(fakes)
    streamed = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    routed = router.stream("m", "req", lambda _: ("chat/completions", streamed.encode(), {}))
    assert (routed.upstream, routed.result.status, routed.attempts) == ("b", 200, 2)
    assert router.health()["b"]["in_flight"] == 1 and router.health()["a"]["in_flight"] == 0
    assert b"[DONE]" in routed.result.read_all()
    routed.result.close()
    routed.result.close()  # twice is harmless
    assert router.health()["b"]["in_flight"] == 0
    router.close()


# -- through Warden --------------------------------------------------------------------------------


def test_warden_records_upstream_and_attempts_and_answers_busy(
    tmp_path: Path, fakes: list[FakeUpstream]
) -> None:
    slow = FakeUpstream().start()
    slow.behaviour.delay_ms = 600
    settings = make_settings(
        tmp_path,
        None,
        upstreams=[
            {"name": "a", "type": "openai", "base_url": fakes[0].base_url, "models": ["gpt-fake"]},
            {"name": "b", "type": "openai", "base_url": fakes[1].base_url, "models": ["gpt-fake"]},
            {
                "name": "slow",
                "type": "openai",
                "base_url": slow.base_url,
                "models": ["gpt-slow"],
                "max_in_flight": 1,
            },
        ],
        routing={"breaker_failures": 0, "breaker_failure_rate": 0},
    )
    live = LiveWarden(settings)
    key = live.create_key()

    def post(model: str) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
        return httpx.post(
            live.base_url + "/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {key}"},
            timeout=10,
        )

    try:
        fakes[0].behaviour.fail_status = 429
        fakes[0].behaviour.retry_after = "5"
        failed_over = post("gpt-fake")
        assert failed_over.status_code == 200 and "upstream" not in " ".join(failed_over.headers)
        fakes[1].behaviour.fail_status = 429
        fakes[1].behaviour.retry_after = "3"
        limited = post("gpt-fake")
        assert limited.status_code == 429 and limited.headers["retry-after"] in ("3", "5")
        held = threading.Thread(target=post, args=("gpt-slow",))
        held.start()
        deadline = time.monotonic() + 5
        while live.services.router.health()["slow"]["in_flight"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        busy = post("gpt-slow")
        held.join()
        assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["code"] == "upstreams_busy"
        rows = {
            r["request_id"].hex: (r["upstream"], r["status"], r["error_class"], r["attempts"])
            for r in live.rows_dicts(
                "SELECT request_id, upstream, status, error_class, attempts FROM requests"
            )
        }
        ids = [r.headers["x-warden-request-id"].replace("-", "") for r in (failed_over, limited, busy)]
        assert rows[ids[0]] == ("b", 200, "", 2)
        assert rows[ids[1]][1:] == (429, "upstream_rate_limited", 2)
        assert rows[ids[2]] == ("", 429, "upstreams_busy", 0)
        assert sorted(rows.values())[-1] == ("slow", 200, "", 1)
        metrics = httpx.get(live.base_url.removesuffix("/v1") + "/metrics").text
        assert "warden_upstream_failovers_total 2.0" in metrics
        assert 'warden_upstream_in_flight{upstream="slow"} 0.0' in metrics
    finally:
        live.stop()
        slow.stop()
