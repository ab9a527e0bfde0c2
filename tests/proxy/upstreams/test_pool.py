"""The upstream connection pool against real loopback servers: keep-alive reuse, the keep-alive race,
the bound on open connections, and what each failure is called."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from proxy.upstreams.fake import FakeUpstream
from proxy.upstreams.pool import HttpPool, PoolError, request_head

BODY = b'{"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}'
JSON = {"content-type": "application/json"}


def pool_for(url: str, **kwargs: float) -> HttpPool:
    options = {"connect_timeout": 2.0, "read_timeout": 2.0, "max_connections": 4, **kwargs}
    return HttpPool(url, **options)  # type: ignore[arg-type]


def test_answers_reuse_one_connection(fake_upstream: FakeUpstream) -> None:
    pool = pool_for(fake_upstream.base_url)
    try:
        for _ in range(3):
            response = pool.request("POST", "chat/completions", BODY, JSON)
            assert response.status == 200 and b"choices" in response.read()
        assert len(pool._idle) == 1
    finally:
        pool.close()


def test_a_stream_arrives_in_pieces_and_frees_its_connection(fake_upstream: FakeUpstream) -> None:
    pool = pool_for(fake_upstream.base_url, max_connections=1)
    try:
        response = pool.request("POST", "chat/completions", BODY[:-1] + b', "stream": true}', JSON)
        pieces = list(response.chunks())
        assert len(pieces) > 1 and b"".join(pieces).rstrip().endswith(b"data: [DONE]")
        # The only slot came back: a second request does not wait.
        assert pool.request("POST", "chat/completions", BODY, JSON).read()
    finally:
        pool.close()


class OneShotServer:
    """Answers each connection's first request, then closes it: every kept-alive connection goes stale."""

    def __init__(self, answer: Callable[[socket.socket], None] | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.answer = answer or self._ok
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer_and_close, args=(client,), daemon=True).start()

    def _answer_and_close(self, client: socket.socket) -> None:
        # Closed here whatever the answer did: a socket left to the collector fails a later test with
        # a ResourceWarning.
        with client:
            self.answer(client)

    @staticmethod
    def _ok(client: socket.socket) -> None:
        with client:
            client.recv(65536)
            # Claims keep-alive, then closes anyway: the race a pool must survive.
            client.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            time.sleep(0.05)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def one_shot() -> Iterator[OneShotServer]:
    server = OneShotServer()
    yield server
    server.close()


def test_a_connection_the_server_closed_is_not_an_error(one_shot: OneShotServer) -> None:
    pool = pool_for(f"http://127.0.0.1:{one_shot.port}/v1")
    try:
        assert pool.request("POST", "x", b"{}", JSON).read() == b"ok"
        time.sleep(0.15)  # the server has closed the kept-alive connection by now
        assert pool.request("POST", "x", b"{}", JSON).read() == b"ok"
        assert one_shot.connections == 2
    finally:
        pool.close()


def test_a_kept_alive_connection_dropped_at_the_next_request_is_retried_once() -> None:
    def first_only(client: socket.socket) -> None:
        with client:
            client.recv(65536)
            client.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            client.recv(65536)  # the second request: dropped unanswered, as a server timing out idles does

    server = OneShotServer(answer=first_only)
    pool = pool_for(f"http://127.0.0.1:{server.port}/v1")
    try:
        assert pool.request("POST", "x", b"{}", JSON).read() == b"ok"
        assert pool.request("POST", "x", b"{}", JSON).read() == b"ok"
        assert server.connections == 2
    finally:
        pool.close()
        server.close()


def test_refused_and_silent_upstreams_have_their_kinds() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(PoolError) as refused:
        pool_for(f"http://127.0.0.1:{closed_port}/v1").request("POST", "x", b"{}", JSON)
    assert refused.value.kind == "unreachable"

    silent = OneShotServer(answer=lambda client: time.sleep(0.5))
    try:
        with pytest.raises(PoolError) as slow:
            pool_for(f"http://127.0.0.1:{silent.port}/v1", read_timeout=0.2).request("POST", "x", b"{}", JSON)
        assert slow.value.kind == "timeout"
    finally:
        silent.close()

    garbage = OneShotServer(answer=lambda client: client.sendall(b"NOT HTTP AT ALL\r\n\r\n"))
    try:
        with pytest.raises(PoolError) as bad:
            pool_for(f"http://127.0.0.1:{garbage.port}/v1").request("POST", "x", b"{}", JSON)
        assert bad.value.kind == "bad_response"
    finally:
        garbage.close()


def test_open_connections_are_bounded(fake_upstream: FakeUpstream) -> None:
    pool = pool_for(fake_upstream.base_url, max_connections=1, connect_timeout=0.2)
    try:
        held = pool.request("POST", "chat/completions", BODY, JSON)  # not read: its connection is taken
        with pytest.raises(PoolError) as waited:
            pool.request("POST", "chat/completions", BODY, JSON)
        assert waited.value.kind == "timeout" and "no free connection" in str(waited.value)
        held.close()  # unread: the connection is dropped, and its slot freed
        assert pool.request("POST", "chat/completions", BODY, JSON).read()
    finally:
        pool.close()


def test_not_an_http_url() -> None:
    with pytest.raises(ValueError, match="http"):
        pool_for("ftp://example.com/v1")


def test_a_header_http_cannot_carry_is_a_failure_that_does_not_quote_it(fake_upstream: FakeUpstream) -> None:
    pool = pool_for(fake_upstream.base_url, max_connections=1)
    try:
        with pytest.raises(PoolError) as bad:
            headers = {**JSON, "authorization": "Bearer sk-secret\nx: y"}
            pool.request("POST", "chat/completions", BODY, headers)
        assert bad.value.kind == "bad_response" and "sk-secret" not in str(bad.value)
        assert pool.request("POST", "chat/completions", BODY, JSON).read()  # the slot came back
    finally:
        pool.close()


def test_the_request_head_is_what_http_client_sends() -> None:
    head = request_head(
        "POST", "/v1/chat/completions", "api.example", {"content-type": "application/json"}, 12
    )
    assert head == (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: api.example\r\nAccept-Encoding: identity\r\n"
        b"Content-Length: 12\r\ncontent-type: application/json\r\n\r\n"
    )
    # A caller's own Host, Accept-Encoding and length win; a folded value (obsolete but legal) passes.
    given = {"Host": "h", "accept-encoding": "gzip", "Content-Length": "3", "x-long": "a\tb"}
    assert request_head("GET", "/", "api.example", given, 3).count(b"Host:") == 1
    assert b"Content-Length: 3\r\n" in request_head("GET", "/", "api.example", given, 3)


@pytest.mark.parametrize(
    "headers",
    [
        {"x-api-key": "sk-1\r\nx-evil: 1"},
        {"x-api-key": "sk-1\nx-evil: 1"},
        {"x-api-key": "sk-1\x00"},
        {"x-api-key": "ключ"},
        {"bad name": "v"},
        {"": "v"},
        {"x:y": "v"},
    ],
)
def test_a_request_head_refuses_what_would_inject_or_cannot_travel(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        request_head("POST", "/", "h", headers, 0)


def test_thehost_header_names_the_port_unless_it_is_the_schemes() -> None:
    assert pool_for("http://127.0.0.1:80/v1").host_header == "127.0.0.1"
    assert pool_for("https://api.example/v1").host_header == "api.example"
    assert pool_for("http://[::1]:8080/v1").host_header == "[::1]:8080"
