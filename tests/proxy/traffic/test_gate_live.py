"""Limits and budgets through a live Warden, with the official SDKs: what a client sees and what is
logged, with the state in the machine's Redis (and in memory for the main cases: test_counters.py
holds both to the same semantics)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from proxy.upstreams.fake import FakeUpstream
from proxy.upstreams.fake.replies import FakeBehaviour
from tests.proxy.traffic.conftest import REDIS_URL
from tests.support import LiveWarden, make_settings

PRICES = {
    "gpt-fake": {"input": 0.15, "output": 0.6},
    "fake-hang": {"input": 0.15, "output": 0.6},
}
Start = Callable[..., LiveWarden]


@pytest.fixture
def slow_upstream() -> Iterator[FakeUpstream]:
    """Answers after 0.4 s: long enough for concurrent requests to overlap."""
    server = FakeUpstream(behaviour=FakeBehaviour(delay_ms=400)).start()
    yield server
    server.stop()


BOTH = pytest.mark.parametrize("start", ["memory", "redis"], indirect=True)


@pytest.fixture(params=["redis"])
def start(
    request: pytest.FixtureRequest, tmp_path: Path, slow_upstream: FakeUpstream, redis_prefix: str
) -> Iterator[Start]:
    started: list[LiveWarden] = []

    def run(**sections: Any) -> LiveWarden:
        if request.param == "redis":
            sections["storage"] = {**sections.get("storage", {}), "redis_url": REDIS_URL}
            sections["traffic"] = {**sections.get("traffic", {}), "key_prefix": redis_prefix}
        live = LiveWarden(make_settings(tmp_path, slow_upstream.base_url, prices=PRICES, **sections))
        started.append(live)
        return live

    yield run
    for live in started:
        live.stop()


def client(live: LiveWarden, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key=key, max_retries=0)


def ask(live: LiveWarden, key: str, model: str = "gpt-fake", max_tokens: int = 50) -> Any:
    return client(live, key).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hello"}], max_tokens=max_tokens
    )


@BOTH
def test_a_requests_limit_answers_429_as_openai_does(start: Start) -> None:
    live = start(limits=[{"scope": "key", "rpm": 3}])
    key, other = live.create_key(), live.create_key()
    remaining = [ask(live, key).headers["x-ratelimit-remaining-requests"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    with pytest.raises(openai.RateLimitError) as refused:
        ask(live, key)
    error = refused.value
    assert error.code == "rate_limit_exceeded"
    assert 15 <= int(error.response.headers["retry-after"]) <= 20  # one request every 20 s
    assert error.response.headers["x-ratelimit-limit-requests"] == "3"
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert ask(live, other).http_response.status_code == 200  # the limit is per key
    row = live.row_for(error.response.headers["x-warden-request-id"])
    assert (row["status"], row["error_class"]) == (429, "rate_limited_requests")
    anthropic_shape = httpx.post(
        live.base_url + "/messages",
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        json={"model": "gpt-fake", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert anthropic_shape.status_code == 429
    assert anthropic_shape.json()["error"]["type"] == "rate_limit_error"
    assert "retry-after" in anthropic_shape.headers


def test_a_tokens_limit_counts_the_worst_case_then_the_real_use(start: Start) -> None:
    live = start(limits=[{"scope": "team", "tpm": 1000}])
    key = live.create_key()
    first = ask(live, key, max_tokens=600)  # reserved about 600 tokens plus the prompt's estimate
    assert int(first.headers["x-ratelimit-remaining-tokens"]) < 400
    # Settled with its real use (a few tokens), so a second large request fits.
    second = ask(live, key, max_tokens=600)
    assert second.http_response.status_code == 200
    with pytest.raises(openai.RateLimitError, match="Request too large"):
        ask(live, key, max_tokens=5000)


def test_concurrent_requests_are_capped(start: Start) -> None:
    live = start(limits=[{"scope": "team", "concurrent": 2}])
    key = live.create_key()

    def one(_: int) -> int:
        try:
            return ask(live, key).http_response.status_code
        except openai.RateLimitError as error:
            assert error.code == "concurrency_limit_exceeded"
            return 429

    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(one, range(6)))
    assert statuses.count(200) >= 2 and statuses.count(429) >= 2
    assert ask(live, key).http_response.status_code == 200  # every slot was given back


@BOTH
def test_a_hard_budget_holds_under_concurrency_and_is_settled(start: Start) -> None:
    # Each request reserves about 35 micro-USD (max_tokens 50 at 0.6, plus the prompt estimate):
    # a budget of 100 lets two run at once, however many are sent together.
    live = start(budgets=[{"scope": "team", "period": "day", "hard_usd": 0.0001}])
    key = live.create_key()

    def one(_: int) -> str:
        try:
            ask(live, key, model="fake-hang")  # held until the upstream times out (1.5 s)
        except openai.RateLimitError as error:
            assert error.code == "budget_exceeded" and error.type == "insufficient_quota"
            return "refused"
        except openai.APIStatusError as error:
            assert error.status_code == 504
        return "admitted"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(one, range(8)))
    assert outcomes.count("admitted") == 2
    gate = live.services.traffic
    (state,) = gate.budgets_for(live.services.keys.authenticate(key))
    assert gate.usage(state) == (0, 0)  # timed out: nothing spent, the reservations released
    for _ in range(3):
        ask(live, key)  # one at a time: each settles at its real cost, far below its reservation
    spent, reserved = gate.usage(state)
    rows = live.rows_dicts("SELECT cost_micro_usd FROM requests WHERE status = 200")
    assert len(rows) == 3 and reserved == 0
    assert spent == sum(r["cost_micro_usd"] for r in rows) > 0


def test_unpriced_models_under_a_hard_budget_are_refused(start: Start) -> None:
    live = start(budgets=[{"scope": "key", "period": "month", "hard_usd": 5}])
    with pytest.raises(openai.PermissionDeniedError) as refused:
        ask(live, live.create_key(), model="fake-tools")
    assert refused.value.code == "unpriced_model_under_budget"


def test_a_soft_budget_flags_and_lets_through(start: Start) -> None:
    live = start(budgets=[{"scope": "tenant", "period": "total", "soft_usd": 0.000001}])
    key = live.create_key()
    ask(live, key)
    raw = ask(live, key)
    assert raw.http_response.status_code == 200
    row = live.row_for(raw.headers["x-warden-request-id"])
    assert "budget_soft:tenant:total" in row["finding_kind"] and row["decision"] == "flag"


def test_a_budget_starts_from_what_the_log_says_was_spent(start: Start) -> None:
    live = start(budgets=[{"scope": "team", "period": "month", "hard_usd": 1}])
    key = live.create_key(team="beta")
    now = datetime.now(UTC)
    live.services.clickhouse().command(
        "INSERT INTO requests (tenant, team, request_id, ts, route, model, status, cost_micro_usd) "
        "VALUES ('default', 'beta', generateUUIDv4(), {ts:DateTime64(3, 'UTC')}, 'chat.completions', "
        "'gpt-fake', 200, 999990)",
        parameters={"ts": now},
    )
    with pytest.raises(openai.RateLimitError, match="Budget exceeded"):
        ask(live, key)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_redis_down_refuses_budgets_and_lets_limits_through(
    tmp_path: Path, slow_upstream: FakeUpstream
) -> None:
    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        budgets = LiveWarden(
            make_settings(
                tmp_path / "a",
                slow_upstream.base_url,
                prices=PRICES,
                storage={"redis_url": url},
                budgets=[{"scope": "team", "period": "day", "hard_usd": 10}],
            )
        )
        limits = LiveWarden(
            make_settings(
                tmp_path / "b",
                slow_upstream.base_url,
                prices=PRICES,
                storage={"redis_url": url},
                limits=[{"scope": "key", "rpm": 100}],
            )
        )
        try:
            budget_key, limit_key = budgets.create_key(), limits.create_key()
            assert ask(budgets, budget_key).http_response.status_code == 200
            assert ask(limits, limit_key).http_response.status_code == 200
            server.terminate()
            server.wait(10)
            with pytest.raises(openai.InternalServerError) as down:
                ask(budgets, budget_key)
            assert down.value.status_code == 503 and down.value.code == "limits_unavailable"
            assert ask(limits, limit_key).http_response.status_code == 200  # redis_down_limits: allow
        finally:
            budgets.stop()
            limits.stop()
    finally:
        server.kill()
        server.wait(10)
