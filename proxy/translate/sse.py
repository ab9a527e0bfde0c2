"""Server-sent events: an incremental reader for upstream bytes, and writers for client events.

The reader follows the SSE spec's line rules (\\r\\n, \\n and a lone \\r all end a line) and is fed
bytes split anywhere: a chunk may end mid-line, mid-UTF-8 character, or between the \\r and \\n of one
line end. Events are dispatched on a blank line; at EOF a last event without its blank line still
counts (upstreams that close right after their final `data:` line are common).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from proxy.jsonbody import NotJson, parse_json

DONE = "[DONE]"


@dataclass(frozen=True, slots=True)
class Event:
    name: str | None  # the `event:` field; None when the event had none
    data: str

    def json(self) -> dict[str, Any] | None:
        """The data as a JSON object; None for `[DONE]`, non-JSON data or another JSON value."""
        try:
            value = parse_json(self.data.encode())
        except NotJson:
            return None
        return value if isinstance(value, dict) else None


class SseReader:
    """Turns upstream bytes into whole events."""

    def __init__(self) -> None:
        self._buffer = b""
        # Chunks with no line end yet: joined once one arrives, so a long line fed in small pieces
        # costs linear time, not quadratic.
        self._pending: list[bytes] = []
        self._name: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[Event]:
        if b"\n" not in chunk and b"\r" not in chunk:
            self._pending.append(chunk)
            return []
        buffer = self._buffer + b"".join(self._pending) + chunk
        self._pending = []
        # A trailing \r may be the first half of \r\n: keep it until the next byte decides.
        cut = len(buffer) - 1 if buffer.endswith(b"\r") else len(buffer)
        lines = buffer[:cut].replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        # The last piece has no line end yet; it waits in front of the held \r, if any.
        self._buffer = lines.pop() + buffer[cut:]
        return [event for line in lines if (event := self._line(line)) is not None]

    def finish(self) -> list[Event]:
        """Events left at EOF: a last line without its end, an event without its blank line."""
        rest = self._buffer + b"".join(self._pending)
        self._buffer, self._pending = b"", []
        lines = rest.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        events = [event for line in lines if (event := self._line(line)) is not None]
        if (last := self._line(b"")) is not None:
            events.append(last)
        return events

    def _line(self, raw: bytes) -> Event | None:
        # Line ends are ASCII, so a line never splits a UTF-8 character.
        line = raw.decode("utf-8", errors="replace")
        if not line:
            if not self._data:
                self._name = None
                return None
            event = Event(self._name, "\n".join(self._data))
            self._name, self._data = None, []
            return event
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._name = value
        return None  # comments (`: ping`), `id:`, `retry:` and unknown fields carry nothing we use


def dumps(value: dict[str, Any]) -> str:
    """Compact JSON, as the upstreams themselves write it (JSON escapes every line end in strings)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def data_event(value: dict[str, Any] | str) -> bytes:
    """A `data:`-only event, as Chat Completions streams them (`[DONE]` is passed as a string)."""
    return f"data: {value if isinstance(value, str) else dumps(value)}\n\n".encode()


def named_event(value: dict[str, Any]) -> bytes:
    """An event named by its own `type`, as the Responses and Messages APIs stream them."""
    return f"event: {value['type']}\ndata: {dumps(value)}\n\n".encode()
