"""The fake upstream's HTTP server: routing by path, failure modes by model name, the wire."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from proxy.upstreams.fake import chat, messages, responses
from proxy.upstreams.fake.replies import FakeBehaviour, Json, Reply, Sse

# By path suffix, so that prefixed layouts (Azure's /openai/deployments/<d>/chat/completions?...) are
# answered too; the more specific suffix first.
ROUTES: tuple[tuple[str, Callable[[dict[str, Any], FakeBehaviour], Reply]], ...] = (
    ("/chat/completions", chat.chat),
    ("/completions", chat.completions),
    ("/embeddings", chat.embeddings),
    ("/responses", responses.respond),
    ("/messages/count_tokens", messages.count_tokens),
    ("/messages", messages.create),
)
ANTHROPIC_ERRORS = {400: "invalid_request_error", 404: "not_found_error", 429: "rate_limit_error"}
FAILING_STATUSES = (400, 429, 500)


class FakeUpstream(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 refuses bursts and distorts any load test.
    request_queue_size = 1024

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, behaviour: FakeBehaviour | None = None
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the fake upstream listens on loopback only")
        self.behaviour = behaviour or FakeBehaviour()
        self.requests: deque[tuple[str, dict[str, Any], dict[str, str]]] = deque(maxlen=1000)
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    @property
    def root_url(self) -> str:
        """The server without the /v1 prefix (what Anthropic's SDK takes as its base URL)."""
        host, port = self.server_address[:2]
        if not isinstance(host, str):  # typeshed allows bytes; an AF_INET(6) socket reports str
            host = bytes(host).decode()
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def start(self) -> FakeUpstream:
        # serve_forever notices `shutdown()` only between polls: the default 0.5 s cost every test that
        # stops a fake half a second.
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-upstream", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def _error(status: int, message: str, anthropic: bool, kind: str = "invalid_request_error") -> Json:
    """An error body in the shape of the API that was called."""
    if anthropic:
        payload = {
            "type": "error",
            "error": {"type": ANTHROPIC_ERRORS.get(status, "api_error"), "message": message},
        }
        return Json(payload, status)
    return Json({"error": {"message": message, "type": kind, "param": None, "code": None}}, status)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeUpstream

    def setup(self) -> None:
        super().setup()
        # Without this, a keep-alive reply written in two parts stalls ~40 ms (Nagle + delayed ACK).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        return

    def handle(self) -> None:
        # A client that goes away mid-reply is normal here (disconnect tests, load tests).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().handle()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        # Anthropic's SDK always sends its version header; its model objects have another shape.
        anthropic = "anthropic-version" in self.headers
        if path == "/v1/models":
            data = [_model("fake", anthropic)]
            if anthropic:
                self._reply(Json({"data": data, "has_more": False, "first_id": "fake", "last_id": "fake"}))
            else:
                self._reply(Json({"object": "list", "data": data}))
        elif path.startswith("/v1/models/"):
            model = unquote(path[len("/v1/models/") :])
            if not self._failed(model, anthropic):
                self._reply(Json(_model(model, anthropic)))
        else:
            self._reply(_error(404, "not found", anthropic))

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        anthropic = "/messages" in path
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._reply(_error(400, "bad json", anthropic))
            return
        self.server.requests.append((self.path, body, {k.lower(): v for k, v in self.headers.items()}))
        behaviour = self.server.behaviour
        if behaviour.delay_ms:
            time.sleep(behaviour.delay_ms / 1000)
        if behaviour.fail_status:
            retry = {"retry-after": behaviour.retry_after} if behaviour.retry_after else {}
            status = behaviour.fail_status
            self._reply(_error(status, f"fake error {status}", anthropic, "fake_error"), headers=retry)
            return
        model = str(body.get("model", ""))
        if self._failed(model, anthropic):
            return
        for suffix, answer in ROUTES:
            if path.endswith(suffix):
                try:
                    reply = answer(body, behaviour)
                except (AttributeError, TypeError, KeyError, IndexError, ValueError):
                    # A field of a shape the fake does not read (`"tools": [[]]`): a real API answers
                    # 400, not a reset connection and a traceback.
                    reply = _error(400, "the fake cannot read this request", anthropic)
                self._reply(reply, cut=model == "fake-cut")
                return
        self._reply(_error(404, "not found", anthropic))

    def _failed(self, model: str, anthropic: bool) -> bool:
        """Answer as the failure model `model` asks for; False when it is not one."""
        if model == "fake-hang":
            time.sleep(self.server.behaviour.hang_seconds)
        elif model == "fake-reset":
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            self.close_connection = True
            self.connection.close()
        elif model == "fake-garbage":
            self._send(200, b"<html>this is not json", "text/html")
        elif model in {f"fake-{code}" for code in FAILING_STATUSES}:
            code = int(model[len("fake-") :])
            headers = {"retry-after": "1"} if code == 429 else {}
            if anthropic:
                self._reply(_error(code, f"fake error {code}", anthropic=True), headers=headers)
            else:
                payload = {"error": {"message": f"fake error {code}", "type": "fake_error", "code": code}}
                self._reply(Json(payload, code, headers))
        else:
            return False
        return True

    # -- wire ----------------------------------------------------------------------------------

    def _reply(self, reply: Reply, cut: bool = False, headers: dict[str, str] | None = None) -> None:
        if isinstance(reply, Json):
            extra = {**reply.headers, **(headers or {})}
            self._send(reply.status, json.dumps(reply.payload).encode(), "application/json", extra)
            return
        self._stream(reply, cut)

    def _stream(self, reply: Sse, cut: bool) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        # A cut stream ends cleanly at the HTTP level, halfway through its events: the client sees
        # neither [DONE] nor a completion event.
        frames = reply.frames[: max(1, len(reply.frames) // 2)] if cut else reply.frames
        delay = self.server.behaviour.chunk_delay_ms / 1000
        for position, frame in enumerate(frames):
            if delay and position:
                time.sleep(delay)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        head = [
            f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
            f"content-type: {content_type}",
            f"content-length: {len(body)}",
        ]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        # One write for head and body: see setup().
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        self.wfile.flush()


def _model(model: str, anthropic: bool) -> dict[str, Any]:
    if anthropic:
        return {"type": "model", "id": model, "display_name": model, "created_at": "2025-01-01T00:00:00Z"}
    return {"id": model, "object": "model", "created": 0, "owned_by": "fake"}
