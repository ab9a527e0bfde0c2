"""A fast fake OpenAI-compatible upstream on loopback, for tests, benchmarks and offline demos.

It answers in OpenAI's wire format: the reply echoes the last user message (or a fixed text of
`words` words), streamed in `chunks` events. Model names choose failure modes:

    fake-hang     never answers            fake-reset    closes the connection
    fake-garbage  200 with a non-JSON body fake-429/400/500  that HTTP error
    fake-cut      a stream that stops without [DONE]
    fake-tools    answers with a tool call when tools are sent

    warden fake-upstream --port 9000 [--delay-ms 0] [--chunks 8]
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeBehaviour:
    delay_ms: float = 0.0  # before the first byte
    chunk_delay_ms: float = 0.0  # between stream events
    chunks: int = 8
    words: int = 0  # 0: echo the last user message
    hang_seconds: float = 30.0


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
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        if not isinstance(host, str):  # typeshed allows bytes; an AF_INET(6) socket reports str
            host = bytes(host).decode()
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeUpstream:
        self._thread = threading.Thread(target=self.serve_forever, name="fake-upstream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


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
        if self.path.rstrip("/") == "/v1/models":
            self._send(
                200, {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "fake"}]}
            )
        else:
            self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            self._send(400, {"error": {"message": "bad json", "type": "invalid_request_error"}})
            return
        self.server.requests.append((self.path, body, {k.lower(): v for k, v in self.headers.items()}))
        behaviour = self.server.behaviour
        model = str(body.get("model", ""))
        if behaviour.delay_ms:
            time.sleep(behaviour.delay_ms / 1000)
        if model == "fake-hang":
            time.sleep(behaviour.hang_seconds)
            return
        if model == "fake-reset":
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            self.close_connection = True
            self.connection.close()
            return
        if model == "fake-garbage":
            self._send_raw(200, b"<html>this is not json", "text/html")
            return
        for code in (400, 429, 500):
            if model == f"fake-{code}":
                self._send(
                    code,
                    {"error": {"message": f"fake error {code}", "type": "fake_error", "code": code}},
                    {"retry-after": "1"} if code == 429 else None,
                )
                return
        if self.path.endswith("/embeddings"):
            self._embeddings(body)
        elif self.path.endswith("/chat/completions"):
            self._completion(body, chat=True)
        elif self.path.endswith("/completions"):
            self._completion(body, chat=False)
        else:
            self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    # -- replies -------------------------------------------------------------------------------

    def _reply_text(self, body: dict[str, Any], chat: bool) -> str:
        words = self.server.behaviour.words
        if words:
            return " ".join(f"word{i}" for i in range(words))
        if chat:
            for message in reversed(body.get("messages") or []):
                if isinstance(message, dict) and message.get("role") == "user":
                    content = message.get("content")
                    return content if isinstance(content, str) else json.dumps(content)
            return "hello"
        prompt = body.get("prompt")
        return prompt if isinstance(prompt, str) else "hello"

    def _completion(self, body: dict[str, Any], chat: bool) -> None:
        text = self._reply_text(body, chat)
        n = body.get("n") or 1
        prompt_tokens = len(json.dumps(body.get("messages") or body.get("prompt") or "").split())
        completion_tokens = len(text.split()) * n
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
        }
        tool_call = None
        if chat and body.get("tools") and body.get("model") == "fake-tools":
            function = body["tools"][0].get("function", {})
            tool_call = {
                "id": "call_1",
                "type": "function",
                "function": {"name": function.get("name", "f"), "arguments": json.dumps({"text": text})},
            }
        if body.get("stream"):
            self._stream(body, text, n, usage, chat, tool_call)
            return
        choices = []
        for index in range(n):
            if chat:
                message: dict[str, Any] = {"role": "assistant", "content": None if tool_call else text}
                if tool_call:
                    message["tool_calls"] = [tool_call]
                choices.append(
                    {
                        "index": index,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": "tool_calls" if tool_call else "stop",
                    }
                )
            else:
                choices.append({"index": index, "text": text, "logprobs": None, "finish_reason": "stop"})
        self._send(
            200,
            {
                "id": f"fake-{uuid.uuid4().hex[:12]}",
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": choices,
                "usage": usage,
            },
            {"x-ratelimit-remaining-requests": "999"},
        )

    def _stream(
        self,
        body: dict[str, Any],
        text: str,
        n: int,
        usage: dict[str, Any],
        chat: bool,
        tool_call: dict[str, Any] | None,
    ) -> None:
        behaviour = self.server.behaviour
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {
            "id": f"fake-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": body.get("model"),
        }
        pieces = _split(text, behaviour.chunks)
        for position, piece in enumerate(pieces):
            choices = []
            for index in range(n):
                if chat:
                    delta: dict[str, Any] = {"content": piece}
                    if position == 0:
                        delta["role"] = "assistant"
                    choices.append({"index": index, "delta": delta, "logprobs": None, "finish_reason": None})
                else:
                    choices.append({"index": index, "text": piece, "logprobs": None, "finish_reason": None})
            self._chunk(dict(base, choices=choices, **({"usage": None} if include_usage else {})))
            if body.get("model") == "fake-cut" and position >= len(pieces) // 2:
                self._end_chunks()
                return
            if behaviour.chunk_delay_ms:
                time.sleep(behaviour.chunk_delay_ms / 1000)
        final = []
        for index in range(n):
            if chat:
                delta = {"tool_calls": [dict(tool_call, index=0)]} if tool_call else {}
                final.append(
                    {"index": index, "delta": delta, "finish_reason": "tool_calls" if tool_call else "stop"}
                )
            else:
                final.append({"index": index, "text": "", "finish_reason": "stop"})
        self._chunk(dict(base, choices=final, **({"usage": None} if include_usage else {})))
        if include_usage:
            self._chunk(dict(base, choices=[], usage=usage))
        self._write_chunk(b"data: [DONE]\n\n")
        self._end_chunks()

    def _embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        data = [
            {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3, float(len(str(item)))]}
            for i, item in enumerate(items)
        ]
        tokens = sum(len(str(item).split()) for item in items)
        self._send(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    # -- wire ----------------------------------------------------------------------------------

    def _chunk(self, payload: dict[str, Any]) -> None:
        self._write_chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_raw(
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


def _split(text: str, parts: int) -> list[str]:
    if not text:
        return [""]
    parts = max(1, min(parts, len(text)))
    size = -(-len(text) // parts)
    return [text[i : i + size] for i in range(0, len(text), size)]
