"""Server-sent events relay: passes an upstream's SSE through event by event, reading as it goes.

Each chunk is split into whole events (a partial event waits for the next chunk), the JSON data of
each is read once for usage and finish reasons, and the bytes go out unchanged, except a usage
chunk Warden asked for on its own behalf, which the client did not request and never sees.
"""

from __future__ import annotations

import json
from typing import Any

from proxy.exchange import Exchange

DONE = b"[DONE]"


class SseRelay:
    def __init__(self, exchange: Exchange, *, drop_usage_chunk: bool) -> None:
        self._exchange = exchange
        self._drop_usage_chunk = drop_usage_chunk
        self._buffer = b""
        self._indexes: set[int] = set()
        self.texts: dict[int, list[str]] = {}
        self.done = False
        self.malformed = 0

    def feed(self, chunk: bytes) -> bytes:
        """Bytes to send to the client now (whole events only)."""
        buffer = self._buffer + chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self._buffer = buffer
            return b""
        self._buffer = buffer[end + 2 :]
        out = []
        for event in buffer[: end + 2].split(b"\n\n"):
            if event and self._keep(event):
                out.append(event + b"\n\n")
        return b"".join(out)

    def finish(self) -> bytes:
        """What is left when the upstream closed (an unterminated last event), made whole."""
        rest, self._buffer = self._buffer.strip(), b""
        if rest and self._keep(rest):
            return rest + b"\n\n"
        return b""

    def _keep(self, event: bytes) -> bool:
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == DONE:
                self.done = True
                return True
            try:
                payload = json.loads(data)
            except ValueError:
                self.malformed += 1
                return True
            if isinstance(payload, dict):
                return self._inspect(payload)
        return True

    def answer(self) -> list[dict[str, Any]]:
        """The streamed text per choice, for the transcript."""
        return [{"index": i, "content": "".join(parts)} for i, parts in sorted(self.texts.items())]

    def _inspect(self, payload: dict[str, Any]) -> bool:
        exchange = self._exchange
        choices = payload.get("choices")
        usage = payload.get("usage")
        if usage:
            exchange.take_usage(usage)
        if isinstance(choices, list):
            for choice in choices:
                if not isinstance(choice, dict):
                    continue
                index = choice.get("index", 0)
                if isinstance(index, int):
                    self._indexes.add(index)
                    delta = choice.get("delta")
                    piece = delta.get("content") if isinstance(delta, dict) else choice.get("text")
                    if isinstance(piece, str) and piece:
                        self.texts.setdefault(index, []).append(piece)
                reason = choice.get("finish_reason")
                if isinstance(reason, str) and reason and not exchange.finish_reason:
                    exchange.finish_reason = reason
            exchange.choices = len(self._indexes)
            if usage and not choices and self._drop_usage_chunk:
                return False
        return True
