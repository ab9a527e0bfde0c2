"""Bad input and hostile conditions over raw HTTP: each gets an OpenAI-shaped error and a row."""

from __future__ import annotations

import json
import socket
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from proxy.upstreams.fake import FakeUpstream
from tests.support import ADMIN_TOKEN, FakeClock, LiveWarden, make_settings


def post(warden: LiveWarden, path: str, content: bytes, key: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    return httpx.post(warden.base_url + path, content=content, headers=headers, timeout=10)


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"", None, "empty"),
        (b"[1, 2]", None, "JSON object"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model", "'model'"),
        (b'{"model": 5, "messages": []}', "model", "non-empty string"),
        (b'{"model": "gpt-fake"}', "messages", "'messages'"),
        (b'{"model": "gpt-fake", "messages": "hi"}', "messages", "non-empty array"),
        (b'{"model": "gpt-fake", "messages": [{"content": "x"}]}', "messages[0].role", "role"),
        (b'{"model": "gpt-fake", "messages": [{"role": "user"}], "stream": "yes"}', "stream", "boolean"),
        (b'{"model": "gpt-fake", "messages": [{"role": "user"}], "n": 0}', "n", "'n'"),
        (
            b'{"model": "gpt-fake", "messages": [{"role": "user"}], "stream_options": {}}',
            "stream_options",
            "only",
        ),
    ],
)
def test_malformed_requests_get_clear_400s(
    warden_chdb: LiveWarden, fake_upstream: FakeUpstream, body: bytes, param: str | None, fragment: str
) -> None:
    before = len(fake_upstream.requests)
    response = post(warden_chdb, "/chat/completions", body, warden_chdb.create_key())
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert fragment in error["message"]
    assert len(fake_upstream.requests) == before, "a malformed request must never reach the upstream"
    row = warden_chdb.row_for(response.headers["x-warden-request-id"])
    assert (row["status"], row["error_class"]) == (400, "bad_request")


def test_oversized_body_is_413_and_logged(tmp_path: Path, fake_upstream: FakeUpstream) -> None:
    settings = make_settings(tmp_path, fake_upstream.base_url, server={"max_body_bytes": 1024})
    live = LiveWarden(settings)
    try:
        big = json.dumps(
            {"model": "gpt-fake", "messages": [{"role": "user", "content": "x" * 5000}]}
        ).encode()
        response = post(live, "/chat/completions", big, live.create_key())
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "request_too_large"
        assert live.rows("SELECT status, error_class FROM requests") == [(413, "request_too_large")]
        assert len(fake_upstream.requests) == 0
    finally:
        live.stop()


def test_missing_key_and_unknown_routes(warden_chdb: LiveWarden) -> None:
    response = post(warden_chdb, "/chat/completions", b"{}")
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(warden_chdb.base_url + "/nope").status_code == 401
    auth = {"authorization": f"Bearer {warden_chdb.create_key()}"}
    missing = httpx.get(warden_chdb.base_url + "/nope", headers=auth)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unsupported_endpoint"
    assert "/v1/responses" in missing.json()["error"]["message"] and "x-warden-request-id" in missing.headers
    assert (
        warden_chdb.row_for(missing.headers["x-warden-request-id"])["error_class"] == "unsupported_endpoint"
    )
    wrong_method = httpx.get(warden_chdb.base_url + "/chat/completions", headers=auth)
    assert wrong_method.status_code == 405
    assert httpx.get(warden_chdb.base_url.removesuffix("/v1") + "/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/messages", 405),
        ("PUT", "/v1/messages/count_tokens", 405),
        ("GET", "/messages", 405),
        ("DELETE", "/messages/count_tokens", 405),
        ("POST", "/v1/messages", 401),
    ],
)
def test_every_answer_on_the_messages_routes_has_anthropics_shape(
    warden_chdb: LiveWarden, method: str, path: str, status: int
) -> None:
    """Found by the fuzzer: a wrong method on /v1/messages answered in OpenAI's shape, unless the
    client happened to send `anthropic-version`."""
    root = warden_chdb.base_url.removesuffix("/v1")
    key = warden_chdb.create_key() if status == 405 else "wdn-unknown"
    response = httpx.request(method, root + path, headers={"x-api-key": key}, timeout=10)
    assert response.status_code == status
    body = response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body


def test_expired_key_is_rejected(tmp_path: Path, fake_upstream: FakeUpstream) -> None:
    clock = FakeClock()
    live = LiveWarden(make_settings(tmp_path, fake_upstream.base_url), clock=clock)
    try:
        key = live.create_key(expires_at=clock() + timedelta(seconds=1))
        body = b'{"model": "gpt-fake", "messages": [{"role": "user", "content": "x"}]}'
        assert post(live, "/chat/completions", body, key).status_code == 200
        clock.advance(seconds=2)
        assert post(live, "/chat/completions", body, key).status_code == 401
    finally:
        live.stop()


def test_fallback_to_the_next_upstream(tmp_path: Path, fake_upstream: FakeUpstream) -> None:
    with socket.socket() as probe:  # a port with nothing listening: connection refused
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    settings = make_settings(
        tmp_path,
        None,
        upstreams=[
            {
                "name": "dead",
                "type": "openai",
                "base_url": f"http://127.0.0.1:{dead_port}/v1",
                "models": ["gpt-fake"],
                "retries": 1,
                "connect_timeout": 0.5,
            },
            {"name": "alive", "type": "openai", "base_url": fake_upstream.base_url, "models": ["gpt-fake"]},
        ],
    )
    live = LiveWarden(settings)
    try:
        body = b'{"model": "gpt-fake", "messages": [{"role": "user", "content": "fall back"}]}'
        response = post(live, "/chat/completions", body, live.create_key())
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "fall back"
        assert live.rows("SELECT upstream, status FROM requests") == [("alive", 200)]
    finally:
        live.stop()


def test_client_disconnect_mid_stream_is_logged(warden_chdb: LiveWarden, fake_upstream: FakeUpstream) -> None:
    fake_upstream.behaviour.chunks = 40
    fake_upstream.behaviour.chunk_delay_ms = 25
    body = json.dumps(
        {
            "model": "gpt-fake",
            "stream": True,
            "messages": [{"role": "user", "content": "a long answer " * 10}],
        }
    ).encode()
    port = int(warden_chdb.base_url.split(":")[2].split("/")[0])
    key = warden_chdb.create_key()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while b"data:" not in received:
            piece = sock.recv(4096)
            assert piece, "the stream ended before any event"
            received += piece
    deadline = time.monotonic() + 10
    rows: list = []
    while time.monotonic() < deadline and not rows:
        rows = warden_chdb.rows("SELECT status, error_class, streamed FROM requests")
        time.sleep(0.1)
    assert rows == [(200, "client_disconnected", True)]


DEEP_BODIES = {
    "unclosed arrays": b"[" * 100_000,
    "closed objects": b'{"a": ' * 50_000 + b"1" + b"}" * 50_000,
    "deep field": b'{"model": "gpt-fake", "messages": [{"role": "user", "content": "x"}], "metadata": '
    + b"[" * 900
    + b"]" * 900
    + b"}",
}


def test_deeply_nested_json_is_a_400_everywhere(
    tmp_path: Path, fake_upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """Python's parser recurses: `[` x 100,000 was a RecursionError, a 500 and a traceback."""
    live = LiveWarden(make_settings(tmp_path, fake_upstream.base_url, auth={"admin_token": ADMIN_TOKEN}))
    root = live.base_url.removesuffix("/v1")
    key = live.create_key()
    try:
        for name, body in DEEP_BODIES.items():
            for path, token in (
                ("/v1/chat/completions", key),
                ("/v1/embeddings", key),
                ("/v1/warden/evaluate", ADMIN_TOKEN),
                ("/api/teams", ADMIN_TOKEN),
                ("/api/keys", ADMIN_TOKEN),
                ("/api/transcripts/00000000-0000-4000-8000-000000000000", ADMIN_TOKEN),
            ):
                headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
                response = httpx.post(root + path, content=body, headers=headers, timeout=10)
                assert response.status_code == 400, (name, path, response.status_code)
                error = response.json()["error"]
                assert set(error) == {"message", "type", "param", "code"}, (name, path)
                assert "nested" in error["message"], (name, path, error["message"])
    finally:
        live.stop()
    assert not fake_upstream.requests
    logged = caplog.text
    assert "Traceback" not in logged and "RecursionError" not in logged
    assert not [r for r in caplog.records if r.exc_info], "no request may log an exception"
