"""Two `warden serve` replicas, two workers each, against PostgreSQL, a ClickHouse HTTP endpoint and
Redis, behind a round-robin client: limits and budgets hold across all four processes, and every
answered request is one row in ClickHouse. The topology of examples/replicas/."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import clickhouse_connect
import httpx
import pytest
import redis

from proxy.db import make_engine, make_sessions
from proxy.identity.keys import KeyStore
from proxy.migrate import upgrade_all
from proxy.settings import load_settings
from proxy.upstreams.fake import FakeUpstream
from proxy.upstreams.fake.replies import FakeBehaviour
from tests.support import ROOT, write_config
from tests.test_serve import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"
# A request below reserves about 35 micro-USD: 10 of them fit the budget at once.
RESERVATION = 35
BUDGET_USD = 10 * RESERVATION / 1e6 + 5 / 1e6


@pytest.fixture
def slow_upstream() -> Iterator[FakeUpstream]:
    server = FakeUpstream(behaviour=FakeBehaviour(delay_ms=3000)).start()
    yield server
    server.stop()


@pytest.fixture
def replicas(
    tmp_path: Path,
    postgres_url: str,
    clickhouse_http: str,
    slow_upstream: FakeUpstream,
    fake_upstream: FakeUpstream,
) -> Iterator[tuple[list[str], str, str, str]]:
    prefix = f"warden-replicas:{uuid.uuid4().hex[:8]}:"
    clickhouse = f"{clickhouse_http}/replicas_{uuid.uuid4().hex[:8]}"
    config = write_config(
        tmp_path,
        {
            "server": {"threads": 16},
            "upstreams": [
                {
                    "name": "fake",
                    "type": "openai",
                    "base_url": slow_upstream.base_url,
                    "models": ["gpt-fake"],
                },
                {
                    "name": "fast",
                    "type": "openai",
                    "base_url": fake_upstream.base_url,
                    "models": ["fake-fast"],
                },
            ],
            "prices": {
                "gpt-fake": {"input": 0.15, "output": 0.6},
                "fake-fast": {"input": 0.15, "output": 0.6},
            },
            "storage": {"database_url": postgres_url, "clickhouse_url": clickhouse, "redis_url": REDIS_URL},
            "traffic": {"key_prefix": prefix},
            "limits": [{"scope": "key", "model": "fake-fast", "rpm": 6}],
            "budgets": [{"scope": "team", "match": "spenders", "period": "day", "hard_usd": BUDGET_USD}],
            "analytics": {"spool_dir": str(tmp_path / "spool"), "flush_interval_seconds": 0.2},
            "crypto": {"kek": f"auto:{tmp_path / 'kek.key'}"},
            "exports": {"dir": str(tmp_path / "exports"), "signing_key": str(tmp_path / "signing.key")},
        },
    )
    # In this process, not through the CLI: the same code, without two seconds of imports per command.
    settings = load_settings(config, environ={})
    upgrade_all(settings.storage.database_url, settings.storage.clickhouse_url)
    engine = make_engine(settings.storage.database_url)
    store = KeyStore(make_sessions(engine), cache_seconds=0)
    keys = [store.create(team)[1] for team in ("spenders", "limited")]
    engine.dispose()
    servers, bases, logs = [], [], []
    for index in range(2):
        port = free_port()
        log = (tmp_path / f"replica{index}.log").open("w")
        logs.append(log)
        command = [sys.executable, "-m", "proxy.cli", "serve", "--config", str(config)]
        servers.append(
            subprocess.Popen(
                [*command, "--port", str(port), "--workers", "2"],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        bases.append(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 90
        for base, server in zip(bases, servers, strict=True):
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None and time.monotonic() < deadline, "a replica did not start"
                time.sleep(0.2)
        yield bases, keys[0], keys[1], clickhouse
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)
        for log in logs:
            log.close()
        client = redis.Redis.from_url(REDIS_URL)
        stale = list(client.scan_iter(match=prefix + "*", count=1000))
        if stale:
            client.delete(*stale)
        client.close()


def _ask(base: str, key: str, model: str) -> int:
    response = httpx.post(
        f"{base}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}]},
        timeout=30,
    )
    if response.status_code == 429:
        assert response.json()["error"]["code"] in ("budget_exceeded", "rate_limit_exceeded")
    return response.status_code


def test_limits_and_budgets_hold_across_replicas_and_no_event_is_lost(
    replicas: tuple[list[str], str, str, str],
) -> None:
    bases, spender, limited, clickhouse = replicas
    targets = itertools.cycle(bases)
    # 64 requests at once, each held 3 s by the upstream, spread over four processes: the budget
    # has room for ten reservations, so ten are answered whatever the race. All are sent together
    # (a barrier), well within the 3 s the upstream holds the first ones: none finishes before the last
    # is admitted, so none frees room for an eleventh.
    start = threading.Barrier(64)

    def spend(base: str) -> int:
        start.wait(10)
        return _ask(base, spender, "gpt-fake")

    with ThreadPoolExecutor(64) as pool:
        spent = Counter(pool.map(spend, [next(targets) for _ in range(64)]))
    assert spent == {200: 10, 429: 54}
    # A limit of 6 requests a minute (one every 10 s) for the key, counted by all four processes.
    with ThreadPoolExecutor(12) as pool:
        bursts = [next(targets) for _ in range(12)]
        limited_statuses = Counter(pool.map(lambda base: _ask(base, limited, "fake-fast"), bursts))
    assert limited_statuses == {200: 6, 429: 6}

    answered = spent[200] + limited_statuses[200]
    refused = spent[429] + limited_statuses[429]
    database = clickhouse_connect.get_client(dsn=clickhouse)
    deadline = time.monotonic() + 30
    while True:
        rows = dict(database.query("SELECT status, count() FROM requests GROUP BY status").result_rows)
        if (rows.get(200, 0) >= answered and rows.get(429, 0) >= refused) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    database.close()
    assert rows == {200: answered, 429: refused}  # every exchange logged once, none lost, none twice


def test_the_replicas_example_is_a_valid_config() -> None:
    from proxy.settings import load_settings

    environ = {
        "WARDEN_KEK": "k",
        "OPENAI_KEY_EAST": "a",
        "OPENAI_KEY_WEST": "b",
        "WARDEN_CLICKHOUSE_PASSWORD": "p",
    }
    settings = load_settings(ROOT / "examples" / "replicas" / "warden.yaml", environ=environ)
    assert settings.storage.redis_url and settings.storage.database_url.startswith("postgresql")
    assert settings.limits and settings.budgets and settings.routing.strategy == "weighted"
