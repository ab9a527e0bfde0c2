"""`type: anthropic`: Anthropic's key and version headers, its paths, its answers relayed as bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.settings import ConfigError, UpstreamSettings, load_settings
from proxy.upstreams.anthropic import AnthropicUpstream
from proxy.upstreams.fake import FakeUpstream

BODY = {"model": "claude-fake", "max_tokens": 20, "messages": [{"role": "user", "content": "hello claude"}]}


@pytest.fixture
def upstream(fake_upstream: FakeUpstream) -> Iterator[AnthropicUpstream]:
    settings = UpstreamSettings(
        name="claude", type="anthropic", base_url=fake_upstream.base_url, api_key="sk-ant-test", models=("m",)
    )
    up = AnthropicUpstream(settings)
    yield up
    up.close()


def test_messages_are_signed_the_anthropic_way(
    upstream: AnthropicUpstream, fake_upstream: FakeUpstream
) -> None:
    reply = upstream.complete("messages", json.dumps(BODY).encode(), "req-1")
    assert reply.status == 200 and json.loads(reply.body)["content"][0]["text"] == "hello claude"
    path, body, headers = fake_upstream.requests[-1]
    assert path == "/v1/messages" and body == BODY
    assert headers["x-api-key"] == "sk-ant-test" and headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers, "the key goes in x-api-key only"
    # Anthropic's request id and rate-limit headers reach the client.
    assert reply.headers["request-id"].startswith("req_")
    assert reply.headers["anthropic-ratelimit-requests-remaining"] == "999"


def test_streams_are_relayed_as_bytes(upstream: AnthropicUpstream, fake_upstream: FakeUpstream) -> None:
    stream = upstream.stream("messages", json.dumps(dict(BODY, stream=True)).encode(), "req-2")
    try:
        raw = stream.read_all()
    finally:
        stream.close()
    assert stream.status == 200 and "request-id" in stream.headers
    assert raw.startswith(b"event: message_start\ndata: ") and raw.endswith(
        b'event: message_stop\ndata: {"type": "message_stop"}\n\n'
    )
    assert fake_upstream.requests[-1][2]["accept"] == "text/event-stream"


def test_count_tokens_path(upstream: AnthropicUpstream, fake_upstream: FakeUpstream) -> None:
    reply = upstream.complete("messages/count_tokens", json.dumps(BODY).encode(), "req-3")
    assert json.loads(reply.body)["input_tokens"] > 0
    assert fake_upstream.requests[-1][0] == "/v1/messages/count_tokens"


def test_errors_pass_through_with_retry_after(upstream: AnthropicUpstream) -> None:
    reply = upstream.complete("messages", json.dumps(dict(BODY, model="fake-429")).encode(), "req-4")
    assert reply.status == 429 and reply.headers["retry-after"] == "1"
    assert json.loads(reply.body)["error"]["type"] == "rate_limit_error"


def test_default_base_url_version_and_apis() -> None:
    settings = UpstreamSettings(name="c", type="anthropic", api_key="k", anthropic_version="2024-01-01")
    up = AnthropicUpstream(settings)
    assert up.url_for("messages") == "https://api.anthropic.com:443/v1/messages"
    assert up._headers["anthropic-version"] == "2024-01-01" and up._headers["x-api-key"] == "k"
    assert up.apis == frozenset({"messages"})
    up.close()


CONFIG = "upstreams:\n  - name: claude\n    type: anthropic\n    models: [claude-x]\n"


def test_settings_default_the_base_url(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text(CONFIG)
    (up,) = load_settings(tmp_path / "w.yaml", environ={}).upstreams
    assert (up.base_url, up.anthropic_version) == ("https://api.anthropic.com/v1", "2023-06-01")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "    anthropic_version: june\n",
            "w.yaml:5: upstreams[0].anthropic_version: must be a date like 2023-06-01",
        ),
        (
            "    api_version: 2024-10-21\n",
            "upstreams[0].api_version: applies to type azure_openai only, not anthropic",
        ),
        ("    base_url: api.anthropic.com\n", "upstreams[0].base_url: must be an http(s):// URL"),
    ],
)
def test_settings_errors(tmp_path: Path, extra: str, expected: str) -> None:
    (tmp_path / "w.yaml").write_text(CONFIG + extra)
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "w.yaml", environ={})
    assert expected in str(caught.value)
