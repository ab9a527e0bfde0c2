"""The exact response cache through a live Warden, the official openai SDK and a fake upstream that
counts its calls: hits for JSON and streams, tenants apart, masked personal data (each client gets its
own values back), nothing readable in Redis, bypasses, expiry, the logged row and the cost page, on the
memory and the Redis backend."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from policies.document import PolicyError, parse_policy
from proxy.gateway.cache import MemoryBackend, key_material
from proxy.settings import ConfigError
from proxy.upstreams.fake import FakeUpstream
from tests.support import ADMIN_TOKEN, LiveWarden, make_settings

REDIS_URL = "redis://127.0.0.1:6379/0"
POLICY = """apiVersion: warden/v1
metadata: {{name: cached, version: '1'}}
extends: default
scope: {{teams: [{team}]}}
cache: {{enabled: true, ttl_s: {ttl}}}
rules: {{}}
"""


def _redis_or_skip() -> Any:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis server at 127.0.0.1:6379")
    return client


def start(
    tmp_path: Path, fake: FakeUpstream, backend: str, ttl: float = 600, team: str = "alpha"
) -> tuple[LiveWarden, str]:
    policy = tmp_path / "policies" / "cached.yaml"
    policy.parent.mkdir(exist_ok=True)
    policy.write_text(POLICY.format(team=team, ttl=ttl))
    prefix = f"warden-test-cache:{uuid.uuid4().hex}:"
    sections: dict[str, Any] = {
        "auth": {"admin_token": ADMIN_TOKEN},
        "policies": {"files": [str(policy.parent)], "reload_interval_s": 0},
        "cache": {"backend": backend, "key_prefix": prefix},
    }
    if backend == "redis":
        sections["storage"] = {"redis_url": REDIS_URL}
    live = LiveWarden(make_settings(tmp_path, fake.base_url, **sections))
    live.root = live.base_url.removesuffix("/v1")  # type: ignore[attr-defined]
    return live, prefix


@pytest.fixture(params=["memory", "redis"])
def cached(
    request: pytest.FixtureRequest, tmp_path: Path, fake_upstream: FakeUpstream
) -> Iterator[LiveWarden]:
    redis_client = _redis_or_skip() if request.param == "redis" else None
    live, prefix = start(tmp_path, fake_upstream, request.param)
    live.prefix = prefix  # type: ignore[attr-defined]
    live.redis = redis_client  # type: ignore[attr-defined]
    yield live
    live.stop()
    if redis_client is not None:
        for key in redis_client.scan_iter(match=prefix + "*"):
            redis_client.delete(key)
        redis_client.close()


def sdk(live: LiveWarden, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key=key or live.create_key(), max_retries=0)


def ask(client: openai.OpenAI, text: str, **extra: Any) -> tuple[str, dict[str, str]]:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-fake", messages=[{"role": "user", "content": text}], **extra
    )
    return raw.parse().choices[0].message.content or "", dict(raw.headers)


def ask_stream(client: openai.OpenAI, text: str, **extra: Any) -> tuple[str, list[Any], dict[str, str]]:
    with client.chat.completions.with_streaming_response.create(
        model="gpt-fake", messages=[{"role": "user", "content": text}], stream=True, **extra
    ) as response:
        chunks = list(response.parse())
        headers = dict(response.headers)
    text_out = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text_out, chunks, headers


def test_json_and_stream_answers_are_served_again_within_one_tenant(
    cached: LiveWarden, fake_upstream: FakeUpstream
) -> None:
    client = sdk(cached)
    first, headers = ask(client, "what is the capital of France?")
    assert headers["x-warden-cache"] == "miss" and first == "what is the capital of France?"
    calls = len(fake_upstream.requests)
    again, headers = ask(sdk(cached), "what is the capital of France?")  # another key, same tenant
    assert (again, headers["x-warden-cache"]) == (first, "hit")
    assert len(fake_upstream.requests) == calls
    # A parameter that changes the answer is part of the key; one that does not (`user`) is not.
    ask(client, "what is the capital of France?", temperature=0)
    assert len(fake_upstream.requests) == calls + 1
    _, headers = ask(client, "what is the capital of France?", user="someone")
    assert headers["x-warden-cache"] == "hit"

    # Streams: stored apart from JSON answers, replayed as a stream.
    text, chunks, headers = ask_stream(client, "what is the capital of France?")
    assert headers["x-warden-cache"] == "miss" and text == first
    calls = len(fake_upstream.requests)
    replay, replay_chunks, headers = ask_stream(client, "what is the capital of France?")
    assert (replay, headers["x-warden-cache"]) == (text, "hit")
    assert len(replay_chunks) == len(chunks) > 2
    assert all(c.usage is None for c in replay_chunks)  # Warden's own usage event stays hidden
    assert len(fake_upstream.requests) == calls
    # A client that asks for the usage event gets it from the stored stream.
    _, usage_chunks, headers = ask_stream(
        client, "what is the capital of France?", stream_options={"include_usage": True}
    )
    assert headers["x-warden-cache"] == "hit" and usage_chunks[-1].usage.completion_tokens > 0
    assert len(fake_upstream.requests) == calls

    # Another tenant never sees this tenant's entries.
    other = sdk(cached, cached.create_key("alpha", tenant="other"))
    _, headers = ask(other, "what is the capital of France?")
    assert len(fake_upstream.requests) == calls + 1
    assert headers["x-warden-cache"] == "miss"  # the same policy applies: the cache looked, and missed


def test_masked_personal_data_hits_and_each_client_gets_its_own_values_back(
    cached: LiveWarden, fake_upstream: FakeUpstream
) -> None:
    client = sdk(cached)
    first, headers = ask(client, "Please write to jane.roe@example.com today")
    assert first == "Please write to jane.roe@example.com today" and headers["x-warden-cache"] == "miss"
    upstream_text = fake_upstream.requests[-1][1]["messages"][-1]["content"]
    assert "jane.roe" not in upstream_text and "<" in upstream_text
    calls = len(fake_upstream.requests)
    second, headers = ask(client, "Please write to max.mustermann@example.org today")
    assert headers["x-warden-cache"] == "hit" and len(fake_upstream.requests) == calls
    assert second == "Please write to max.mustermann@example.org today"
    text, _, _ = ask_stream(client, "Mail bob@example.net now")
    replay, _, headers = ask_stream(client, "Mail alice@example.com now")
    assert (text, replay) == ("Mail bob@example.net now", "Mail alice@example.com now")
    assert headers["x-warden-cache"] == "hit"

    redis_client = cached.redis  # type: ignore[attr-defined]
    if redis_client is not None:
        keys = list(redis_client.scan_iter(match=cached.prefix + "*"))  # type: ignore[attr-defined]
        assert len(keys) == 2
        for key in keys:
            name = key.decode()[len(cached.prefix) :]  # type: ignore[attr-defined]
            assert len(name) == 64 and all(c in "0123456789abcdef" for c in name)  # a keyed hash
            value = redis_client.get(key)
            for plain in (b"Please write", b"Mail", b"EMAIL", b"example", b"chat.completion", b"gpt-fake"):
                assert plain not in value


def test_bypasses_and_the_options_field_never_reach_the_upstream(
    cached: LiveWarden, fake_upstream: FakeUpstream
) -> None:
    key = cached.create_key()
    body = {"model": "gpt-fake", "messages": [{"role": "user", "content": "bypass me"}]}
    auth = {"authorization": f"Bearer {key}"}
    with httpx.Client(base_url=cached.base_url, headers=auth, timeout=10) as http:

        def post(payload: dict[str, Any], **headers: str) -> str:
            response = http.post("/chat/completions", json=payload, headers=headers)
            assert response.status_code == 200, response.text
            return response.headers["x-warden-cache"]

        assert post(body, **{"cache-control": "no-store"}) == "bypass"
        assert post(body) == "miss"  # no-store stored nothing
        calls = len(fake_upstream.requests)
        assert post(body) == "hit"
        assert post({**body, "warden": {"cache": False}}) == "bypass"
        assert "warden" not in fake_upstream.requests[-1][1]
        assert post(body, **{"cache-control": "no-cache"}) == "bypass"  # skips the lookup, stores
        assert len(fake_upstream.requests) == calls + 2
        assert post({**body, "warden": {"cache": True}}) == "hit"
        bad = http.post("/chat/completions", json={**body, "warden": {"cache": "no"}})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "warden.cache"


def test_the_hit_is_logged_with_its_cost_saved_and_shown_on_the_cost_page(
    cached: LiveWarden, fake_upstream: FakeUpstream
) -> None:
    client = sdk(cached)
    ask(client, "how much does this cost?")
    ask(client, "how much does this cost?")
    rows = cached.rows_dicts(
        "SELECT cache_hit, cost_micro_usd, cost_saved_micro_usd, prompt_tokens FROM requests ORDER BY ts"
    )
    assert [r["cache_hit"] for r in rows] == [False, True]
    spent = rows[0]["cost_micro_usd"]
    assert spent > 0 and rows[1]["cost_micro_usd"] == 0 and rows[1]["cost_saved_micro_usd"] == spent
    assert rows[0]["cost_saved_micro_usd"] == 0 and rows[1]["prompt_tokens"] == rows[0]["prompt_tokens"]
    with httpx.Client(
        base_url=cached.root,  # type: ignore[attr-defined]
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    ) as admin:
        cost = admin.get("/dashboards/cost.json", params={"range": "1h"}).json()
        page = admin.get("/dashboards/cost", params={"range": "1h"})
    assert cost["cache_hits"] == 1 and cost["cache_saved_usd"] == pytest.approx(spent / 1e6)
    assert cost["total_usd"] == pytest.approx(spent / 1e6)
    assert page.status_code == 200 and "Saved by the response cache" in page.text


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_entries_expire(backend: str, tmp_path: Path, fake_upstream: FakeUpstream) -> None:
    redis_client = _redis_or_skip() if backend == "redis" else None
    live, prefix = start(tmp_path, fake_upstream, backend, ttl=0.3)
    try:
        client = sdk(live)
        ask(client, "short lived")
        assert ask(client, "short lived")[1]["x-warden-cache"] == "hit"
        time.sleep(0.5)
        assert ask(client, "short lived")[1]["x-warden-cache"] == "miss"
    finally:
        live.stop()
        if redis_client is not None:
            for key in redis_client.scan_iter(match=prefix + "*"):
                redis_client.delete(key)
            redis_client.close()


def test_off_unless_the_policy_enables_it(tmp_path: Path, fake_upstream: FakeUpstream) -> None:
    live, _ = start(tmp_path, fake_upstream, "memory", team="someone-else")
    try:
        client = sdk(live)
        ask(client, "not cached")
        calls = len(fake_upstream.requests)
        _, headers = ask(client, "not cached")
        assert len(fake_upstream.requests) == calls + 1 and "x-warden-cache" not in headers
    finally:
        live.stop()


def test_a_key_turns_the_cache_on_or_off_whatever_the_policy_says(
    tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    live, _ = start(tmp_path, fake_upstream, "memory", team="alpha")  # alpha's policy caches
    try:
        off = sdk(live, live.create_key("alpha", cache=False))
        ask(off, "per key")
        calls = len(fake_upstream.requests)
        _, headers = ask(off, "per key")
        assert len(fake_upstream.requests) == calls + 1 and "x-warden-cache" not in headers
        # Team beta's requests fall under the default policy, which does not cache: its key's switch does.
        with httpx.Client(
            base_url=live.base_url.removesuffix("/v1"),
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=10,
        ) as admin:
            assert admin.post("/api/teams", json={"name": "beta"}).status_code in (200, 201)
            made = admin.post("/api/keys", json={"team": "beta", "cache": True})
            assert made.status_code == 201 and made.json()["cache"] is True
            bad = admin.post("/api/keys", json={"team": "beta", "cache": "yes"})
            assert bad.status_code == 400
        on = sdk(live, made.json()["key"])
        assert ask(on, "per key")[1]["x-warden-cache"] == "miss"
        assert ask(on, "per key")[1]["x-warden-cache"] == "hit"
        plain = sdk(live, live.create_key("beta"))
        assert "x-warden-cache" not in ask(plain, "per key")[1]
    finally:
        live.stop()


def test_settings_and_policy_validation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cache\.backend: redis needs storage\.redis_url"):
        make_settings(tmp_path, None, cache={"backend": "redis"})
    with pytest.raises(ConfigError, match=r"cache\.backend: must be memory or redis"):
        make_settings(tmp_path, None, cache={"backend": "disk"})
    with pytest.raises(ConfigError, match=r"storage\.redis_url: must be a redis://"):
        make_settings(tmp_path, None, storage={"redis_url": "http://x"})
    settings = make_settings(tmp_path, None, storage={"redis_url": REDIS_URL}, cache={"backend": "redis"})
    assert settings.storage.redis_url == REDIS_URL and settings.cache.backend == "redis"
    text = POLICY.format(team="a", ttl=60)
    assert parse_policy(text, "p.yaml").cache.ttl_s == 60
    with pytest.raises(PolicyError, match=r"p\.yaml:5: cache\.enabled: must be true or false"):
        parse_policy(text.replace("enabled: true", "enabled: 'yes'"), "p.yaml")
    with pytest.raises(PolicyError, match=r"cache\.ttl_s"):
        parse_policy(text.replace("ttl_s: 60", "ttl_s: -1"), "p.yaml")


def test_key_material_and_memory_backend() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 0}
    same = key_material("chat.completions", "m", False, {**base, "user": "u", "stream_options": {}})
    assert same == key_material("chat.completions", "m", False, dict(reversed(base.items())))
    assert same != key_material("chat.completions", "m", True, base)
    assert same != key_material("chat.completions", "m", False, {**base, "seed": 1})
    now = [0.0]
    memory = MemoryBackend(2, clock=lambda: now[0])
    memory.put("a", b"1", 10)
    memory.put("b", b"2", 10)
    memory.get("a")
    memory.put("c", b"3", 10)  # b, least recently used, goes
    assert (memory.get("a"), memory.get("b"), memory.get("c")) == (b"1", None, b"3")
    now[0] = 11
    assert memory.get("a") is None and len(memory) == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/responses", {"model": "gpt-fake", "input": "typed events for a@example.com", "stream": True}),
        (
            "/messages",
            {
                "model": "gpt-fake",
                "max_tokens": 50,
                "messages": [{"role": "user", "content": "typed events for a@example.com"}],
                "stream": True,
            },
        ),
    ],
)
def test_typed_streams_are_replayed(
    path: str, body: dict[str, Any], tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    live, _ = start(tmp_path, fake_upstream, "memory")
    try:
        auth = {"authorization": f"Bearer {live.create_key()}"}
        with httpx.Client(base_url=live.base_url, headers=auth, timeout=10) as http:
            first = http.post(path, json=body)
            calls = len(fake_upstream.requests)
            again = http.post(path, json=body)
        assert first.status_code == again.status_code == 200
        assert (first.headers["x-warden-cache"], again.headers["x-warden-cache"]) == ("miss", "hit")
        assert len(fake_upstream.requests) == calls
        assert "a@example.com" in again.text and again.text == first.text
    finally:
        live.stop()
