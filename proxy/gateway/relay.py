"""Server-sent events relay: passes an upstream's SSE through event by event, reading as it goes.

Each chunk is split into whole events (a partial event waits for the next chunk), the JSON data of
each is read once for usage and finish reasons, and the bytes go out unchanged, except a usage
chunk Warden asked for on its own behalf, which the client did not request and never sees.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from policies.engine import Blocked, Hit
from policies.stream_guard import StreamGuard
from proxy.formats import WireFormat
from proxy.formats.base import Usage, usage_of
from proxy.gateway.exchange import AppliedPolicy
from proxy.jsonbody import parse_json

DONE = b"[DONE]"


@dataclass(frozen=True, slots=True)
class RelayOutcome:
    """What a relay saw of a stream: the forwarder records it; the relay writes into nothing shared."""

    usage: Usage | None
    finish_reason: str
    choices: int
    # The streamed text per choice, for the transcript (after output masks, before restoration).
    answer: list[dict[str, Any]]


class SseRelay:
    def __init__(self, fmt: WireFormat, *, drop_usage_chunk: bool) -> None:
        self._format = fmt
        self._usage: Usage | None = None
        self._finish_reason = ""
        self._drop_usage_chunk = drop_usage_chunk
        self._buffer = b""
        self._indexes: set[int] = set()
        self.texts: dict[int, list[str]] = {}
        self.done = False
        self.blocked = False
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
            if event and not self.blocked:
                kept = self._emit(event)
                if kept:
                    out.append(kept)
        return b"".join(out)

    def finish(self) -> bytes:
        """What is left when the upstream closed (an unterminated last event), made whole."""
        rest, self._buffer = self._buffer.strip(), b""
        if rest and not self.blocked:
            return self._emit(rest) or b""
        return b""

    def final_checks(self) -> None:
        """Whole-text checks once the answer is complete (none without a policy guard)."""

    def _emit(self, event: bytes) -> bytes | None:
        return event + b"\n\n" if self._keep(event) else None

    def _keep(self, event: bytes) -> bool:
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == DONE:
                self.done = True
                return True
            try:
                payload = parse_json(data)
            except ValueError:
                self.malformed += 1
                return True
            if isinstance(payload, dict):
                return self._inspect(payload)
        return True

    def outcome(self) -> RelayOutcome:
        return RelayOutcome(self._usage, self._finish_reason, len(self._indexes), self._answer())

    def _answer(self) -> list[dict[str, Any]]:
        return [{"index": i, "content": "".join(parts)} for i, parts in sorted(self.texts.items())]

    def _inspect(self, payload: dict[str, Any]) -> bool:
        usage = usage_of(payload)
        if usage is not None:
            self._usage = usage
        pieces = list(self._format.stream_pieces(payload))
        for piece in pieces:
            if piece is None:
                continue
            self._indexes.add(piece.index)
            if piece.text:
                self.texts.setdefault(piece.index, []).append(piece.text)
            if piece.finish_reason and not self._finish_reason:
                self._finish_reason = piece.finish_reason
        # The usage-only event Warden asked for on its own behalf: the client never sees it.
        return not (usage is not None and not pieces and self._drop_usage_chunk)


class GuardedSseRelay(SseRelay):
    """A relay that applies the output policy: each choice's text passes through a StreamGuard,
    events are re-encoded with the text the guard released (placeholders restored), and a block
    ends the stream with `finish_reason: "content_filter"` and `[DONE]`."""

    def __init__(self, fmt: WireFormat, applied: AppliedPolicy, *, drop_usage_chunk: bool) -> None:
        super().__init__(fmt, drop_usage_chunk=drop_usage_chunk)
        self._applied = applied
        self._guards: dict[int, StreamGuard] = {}
        self._ended: set[int] = set()
        self._template: dict[str, Any] = {}

    def _answer(self) -> list[dict[str, Any]]:
        return [{"index": i, "content": g.text()} for i, g in sorted(self._guards.items())]

    def final_checks(self) -> None:
        compiled = self._applied.policy
        if not compiled.has_final_rules("output"):
            return
        report = self._applied.report
        for guard in self._guards.values():
            # Already delivered: a block can only be recorded (as "late"), not enforced.
            for hit in compiled.scan("output", guard.text(), windowed=False):
                report.add(
                    Hit(hit.stage, hit.rule, hit.finding, "late" if hit.action == "block" else hit.action)
                )

    def _guard(self, index: int) -> StreamGuard:
        guard = self._guards.get(index)
        if guard is None:
            compiled = self._applied.policy
            guard = self._guards[index] = StreamGuard(
                compiled,
                self._applied.placeholders,
                self._applied.report,
                restore=compiled.policy.restore,
                holdback=compiled.policy.holdback,
            )
        return guard

    def _emit(self, event: bytes) -> bytes | None:
        data = _data_line(event)
        if data is None:
            return event + b"\n\n"
        if data == DONE:
            self.done = True
            try:
                flushed = self._flush_all()
            except Blocked:
                return self._block()
            return flushed + event + b"\n\n"
        try:
            payload = parse_json(data)
        except ValueError:
            self.malformed += 1
            return event + b"\n\n"
        if not isinstance(payload, dict):
            return event + b"\n\n"
        if not self._inspect(payload):
            return None
        try:
            keep = self._rewrite(payload)
        except Blocked:
            return self._block()
        return _encode(payload) if keep else None

    def _rewrite(self, payload: dict[str, Any]) -> bool:
        """Pass each choice's text through its guard; False when nothing is left to send."""
        pieces = list(self._format.stream_pieces(payload))
        if not pieces:
            return True
        self._template = self._format.stream_template(payload)
        worth_sending = usage_of(payload) is not None
        for piece in pieces:
            if piece is None:
                worth_sending = True
                continue
            guard = self._guard(piece.index)
            out = guard.feed(piece.text) if piece.text else ""
            if piece.finish_reason:
                out += guard.finish()
                self._ended.add(piece.index)
                worth_sending = True
            piece.write(out)
            if out or piece.other_fields:
                worth_sending = True
        return worth_sending

    def _flush_all(self) -> bytes:
        """The held-back text of choices whose stream ended without a finish_reason chunk."""
        out = []
        for index, guard in sorted(self._guards.items()):
            if index in self._ended:
                continue
            text = guard.finish()
            self._ended.add(index)
            if text:
                out.append(_encode(self._chunk(index, text, None)))
        return b"".join(out)

    def _block(self) -> bytes:
        self.blocked = self.done = True
        self._finish_reason = "content_filter"
        indexes = sorted(set(self._guards) - self._ended) or [0]
        chunks = [_encode(self._chunk(i, None, "content_filter")) for i in indexes]
        return b"".join(chunks) + b"data: [DONE]\n\n"

    def _chunk(self, index: int, text: str | None, finish_reason: str | None) -> dict[str, Any]:
        return self._format.stream_chunk(self._template, index, text, finish_reason)

    def finish(self) -> bytes:
        tail = super().finish()
        if self.blocked or self.done:
            return tail
        try:
            return tail + self._flush_all()
        except Blocked:
            return tail + self._block()


def _data_line(event: bytes) -> bytes | None:
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            return line[5:].strip()
    return None


def _encode(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"
