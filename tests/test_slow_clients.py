"""`warden serve` stays answerable while slow clients hold connections open (issue 13, finding 4).

One real `warden serve` for the module (starting one costs seconds), in front of an in-process fake
upstream. With gunicorn's plain gthread worker (`WARDEN_SERVER__WORKER=gthread`) three of these fail:
150 partial heads hold its 64 threads, a head that never ends is never closed, and clients that keep
their end open after a `Connection: close` answer stall its event loop.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from proxy.db import make_engine, make_sessions
from proxy.identity.keys import KeyStore
from proxy.migrate import upgrade_all
from proxy.upstreams.fake import FakeBehaviour, FakeUpstream
from tests.support import ROOT, write_config

HEADER_TIMEOUT_S = 2.0
# Generous for a noisy 2-core machine: unloaded, each of these answers in milliseconds.
ANSWER_WITHIN_S = 1.0
SERVE = [sys.executable, "-m", "proxy.cli", "serve", "--no-migrate"]
PARTIAL_HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: app"


@dataclass(frozen=True)
class Served:
    port: int
    key: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, clickhouse_http: str) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("slow-clients")
    database_url = f"sqlite:///{tmp / 'warden.db'}"
    # ClickHouse over HTTP: migrations and the key are made in this process (each `warden` command
    # costs seconds of imports), and in-process chDB would keep its directory from the server.
    clickhouse_url = f"{clickhouse_http}/t_{uuid.uuid4().hex[:12]}"
    upgrade_all(database_url, clickhouse_url)
    _, key = KeyStore(make_sessions(make_engine(database_url))).create("slow")
    # Streams pause between events, so a test can tell a streamed answer from a buffered one.
    upstream = FakeUpstream(behaviour=FakeBehaviour(chunks=4, chunk_delay_ms=150)).start()
    config = write_config(
        tmp,
        {
            # One worker: what one worker does with slow clients, whatever the machine's cores.
            "server": {"header_timeout_s": HEADER_TIMEOUT_S, "workers": 1},
            "upstreams": [{"name": "fake", "type": "openai", "base_url": upstream.base_url, "models": ["m"]}],
            "storage": {"database_url": database_url, "clickhouse_url": clickhouse_url},
            "analytics": {"spool_dir": str(tmp / "spool")},
            "crypto": {"kek": f"auto:{tmp / 'kek.key'}"},
        },
    )
    port = _free_port()
    log = tmp / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [*SERVE, "--config", str(config), "--port", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        served = Served(port, key, log)
        _chat(served, "warm-up", timeout=30)  # the first request loads what later ones reuse
        yield served
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        upstream.stop()


def _chat(served: Served, text: str, timeout: float = ANSWER_WITHIN_S) -> str:
    api = openai.OpenAI(base_url=f"{served.url}/v1", api_key=served.key, max_retries=0, timeout=timeout)
    reply = api.chat.completions.create(model="m", messages=[{"role": "user", "content": text}])
    return reply.choices[0].message.content or ""


def _chat_request(served: Served, text: str) -> tuple[bytes, bytes]:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": text}]}).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {served.key}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head, body


def _read_reply(sock: socket.socket) -> tuple[int, dict[str, object]]:
    sock.settimeout(10)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


class SlowClients:
    """Keeps `count` connections that sent part of a head and then a byte now and then; one the server
    closes is opened again, as an attacker would."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.selector = selectors.DefaultSelector()
        self.stopping = threading.Event()
        for _ in range(count):
            self.open()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def open(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port))
        try:
            sock.sendall(PARTIAL_HEAD)
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ)
        except BaseException:
            sock.close()  # never left to the garbage collector: an unclosed socket fails the run
            raise

    def run(self) -> None:
        while not self.stopping.is_set():
            for key, _ in self.selector.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    gone = not sock.recv(4096)  # a 408, or the end
                except OSError:
                    gone = True
                if gone:
                    self.selector.unregister(sock)
                    sock.close()
                    if not self.stopping.is_set():
                        with contextlib.suppress(OSError):
                            self.open()
            for key in list(self.selector.get_map().values()):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                with contextlib.suppress(OSError):
                    sock.send(b"a")  # the trickle: gthread's blocking read never ends

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(30)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.selector.close()


def test_answers_while_150_partial_heads_are_open(served: Served) -> None:
    slow = SlowClients(served.port, 150)
    try:
        time.sleep(0.5)  # time enough for gthread to give each of them a thread
        started = time.monotonic()
        assert httpx.get(f"{served.url}/healthz", timeout=ANSWER_WITHIN_S).status_code == 200
        assert _chat(served, "still here") == "still here"
        assert time.monotonic() - started < 2 * ANSWER_WITHIN_S
    finally:
        slow.close()


def test_a_head_that_never_ends_is_closed_after_the_deadline(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", served.port)) as sock:
        sock.sendall(PARTIAL_HEAD)
        started = time.monotonic()
        sock.settimeout(HEADER_TIMEOUT_S + 4)
        try:
            reply = sock.recv(4096)
        except TimeoutError:
            pytest.fail("the connection is still open long after header_timeout_s")
        waited = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408")
    assert HEADER_TIMEOUT_S - 0.5 < waited < HEADER_TIMEOUT_S + 4


def test_a_head_in_pieces_is_answered(served: Served) -> None:
    head, body = _chat_request(served, "in pieces")
    with socket.create_connection(("127.0.0.1", served.port)) as sock:
        for start in range(0, len(head), 40):
            sock.sendall(head[start : start + 40])
            time.sleep(0.05)
        sock.sendall(body)
        status, reply = _read_reply(sock)
    assert status == 200
    assert reply["choices"][0]["message"]["content"] == "in pieces"  # type: ignore[index]


def test_a_slow_body_is_read_whole(served: Served) -> None:
    text = "slow body " * 200
    head, body = _chat_request(served, text)
    pieces = 6
    step = len(body) // pieces + 1
    with socket.create_connection(("127.0.0.1", served.port)) as sock:
        sock.sendall(head)
        # Longer in all than header_timeout_s: a body may take its time as long as it keeps coming.
        for start in range(0, len(body), step):
            time.sleep(HEADER_TIMEOUT_S / 4)
            sock.sendall(body[start : start + step])
        status, reply = _read_reply(sock)
    assert status == 200
    assert reply["choices"][0]["message"]["content"] == text  # type: ignore[index]


def test_a_stream_still_streams(served: Served) -> None:
    api = openai.OpenAI(base_url=f"{served.url}/v1", api_key=served.key, max_retries=0, timeout=10)
    stream = api.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "one two three four"}], stream=True
    )
    arrivals: list[tuple[float, str]] = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append((time.monotonic(), chunk.choices[0].delta.content))
    assert "".join(text for _, text in arrivals) == "one two three four"
    # The fake pauses 150 ms between its four events: they reach the client apart, not at once.
    assert arrivals[-1][0] - arrivals[0][0] > 0.3


def test_clients_that_never_close_do_not_stall_the_loop(served: Served) -> None:
    # Each gets a `Connection: close` answer and keeps its end open: gthread waited up to 2 s for
    # each in its event loop, with nothing else served meanwhile.
    idle = []
    try:
        for _ in range(8):
            sock = socket.create_connection(("127.0.0.1", served.port))
            sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            idle.append(sock)
        time.sleep(0.2)
        started = time.monotonic()
        for _ in range(3):
            assert httpx.get(f"{served.url}/healthz", timeout=ANSWER_WITHIN_S * 4).status_code == 200
        assert time.monotonic() - started < 2 * ANSWER_WITHIN_S
    finally:
        for sock in idle:
            sock.close()


def _keepalive_request(served: Served, text: str) -> bytes:
    head, body = _chat_request(served, text)
    return head.replace(b"Connection: close\r\n", b"") + body


def _read_one(sock: socket.socket, pending: bytearray) -> str:
    """One kept-alive reply's answer text; bytes past it stay in `pending`."""
    sock.settimeout(10)
    while b"\r\n\r\n" not in pending:
        pending += sock.recv(65536)
    head, _, _ = bytes(pending).partition(b"\r\n\r\n")
    length = int(
        next(
            v
            for k, _, v in (line.partition(b":") for line in head.split(b"\r\n"))
            if k.lower() == b"content-length"
        )
    )
    end = len(head) + 4 + length
    while len(pending) < end:
        pending += sock.recv(65536)
    body = bytes(pending[len(head) + 4 : end])
    del pending[:end]
    assert head.startswith(b"HTTP/1.1 200 ") and b"Connection: keep-alive" in head
    return str(json.loads(body)["choices"][0]["message"]["content"])


def test_a_kept_alive_connection_is_served_at_once_in_pieces_and_pipelined(served: Served) -> None:
    # The thread that answered waits briefly for the next request itself (issue 16): a request sent at
    # once, one that arrives in pieces after that wait, and two sent together are each answered.
    pending = bytearray()
    with socket.create_connection(("127.0.0.1", served.port)) as sock:
        sock.sendall(_keepalive_request(served, "first"))
        assert _read_one(sock, pending) == "first"
        sock.sendall(_keepalive_request(served, "at once"))
        assert _read_one(sock, pending) == "at once"
        later = _keepalive_request(served, "in pieces")
        for start in range(0, len(later), 60):
            sock.sendall(later[start : start + 60])
            time.sleep(0.02)
        assert _read_one(sock, pending) == "in pieces"
        sock.sendall(_keepalive_request(served, "one") + _keepalive_request(served, "two"))
        assert [_read_one(sock, pending), _read_one(sock, pending)] == ["one", "two"]
