"""Server-sent events relay: passes an upstream's SSE through event by event, reading as it goes.

Each chunk is split into whole events (a partial event waits for the next chunk), the JSON data of
each is read once through the route's wire format (usage, finish reasons, the texts of every channel),
and the bytes go out unchanged, except a usage chunk Warden asked for on its own behalf, which the
client did not request and never sees. Works for every format: `data:`-only streams ending in
`[DONE]` (chat, completions) and typed events (Responses API, Anthropic Messages).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from policies.engine import Blocked, Hit
from policies.stream_guard import StreamGuard
from proxy.formats import WireFormat
from proxy.formats.base import StreamPiece, Usage, usage_of
from proxy.gateway.exchange import AppliedPolicy
from proxy.jsonbody import parse_json

DONE = b"[DONE]"


@dataclass(frozen=True, slots=True)
class RelayOutcome:
    """What a relay saw of a stream: the forwarder records it; the relay writes into nothing shared."""

    usage: Usage | None
    finish_reason: str
    choices: int
    # The streamed texts per choice, for the transcript (after output masks, before restoration).
    answer: list[dict[str, Any]]


class SseRelay:
    def __init__(self, fmt: WireFormat, *, drop_usage_chunk: bool) -> None:
        self._format = fmt
        self._usage: Usage | None = None
        self._finish_reason = ""
        self._drop_usage_chunk = drop_usage_chunk
        self._buffer = b""
        self._indexes: set[int] = set()
        # channel -> (choice, field, texts); a channel's text as it streamed
        self._texts: dict[Hashable, tuple[int, str, list[str]]] = {}
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
        data = _data_line(event)
        if data is None:
            return True
        if data == DONE:
            self.done = True
            return True
        try:
            payload = parse_json(data)
        except ValueError:
            self.malformed += 1
            return True
        if isinstance(payload, dict):
            return self._inspect(payload, record=True)
        return True

    def outcome(self) -> RelayOutcome:
        return RelayOutcome(self._usage, self._finish_reason, len(self._indexes), self._answer())

    def _answer(self) -> list[dict[str, Any]]:
        return _by_choice((choice, fld, "".join(parts)) for choice, fld, parts in self._texts.values())

    def _inspect(self, payload: dict[str, Any], *, record: bool) -> bool:
        """Read usage, finish reasons and (`record`) texts; False for the event the client never sees."""
        fmt = self._format
        self._usage = fmt.stream_usage(payload, self._usage)
        if fmt.stream_end(payload):
            self.done = True
        pieces = list(fmt.stream_pieces(payload))
        for piece in pieces:
            if piece is None:
                continue
            self._indexes.add(piece.choice)
            if piece.finish_reason and not self._finish_reason:
                self._finish_reason = piece.finish_reason
            if not record or piece.channel is None or piece.text is None:
                continue
            seen = self._texts.get(piece.channel)
            if piece.whole:
                if seen is None:  # a text sent whole, with no deltas before it
                    self._texts[piece.channel] = (piece.choice, piece.field, [piece.text])
            elif piece.text:
                if seen is None:
                    seen = self._texts[piece.channel] = (piece.choice, piece.field, [])
                seen[2].append(piece.text)
        # The usage-only event Warden asked for on its own behalf: the client never sees it.
        return not (self._drop_usage_chunk and not pieces and usage_of(payload) is not None)


class GuardedSseRelay(SseRelay):
    """A relay that applies the output policy: each channel's text (a choice's content, a tool call's
    arguments, a content block) passes through its own StreamGuard, events are re-encoded with the text
    the guard released (placeholders restored, JSON-escaped in arguments), every repeat of a text is
    replaced by what was released, logprobs go wherever the text changed, and a block ends the stream
    the way the format ends a filtered answer."""

    def __init__(self, fmt: WireFormat, applied: AppliedPolicy, *, drop_usage_chunk: bool) -> None:
        super().__init__(fmt, drop_usage_chunk=drop_usage_chunk)
        self._applied = applied
        self._guards: dict[Hashable, StreamGuard] = {}
        self._fields: dict[Hashable, tuple[int, str]] = {}
        self._sent: dict[Hashable, list[str]] = {}
        self._last: dict[Hashable, tuple[dict[str, Any], StreamPiece]] = {}
        self._ended: set[Hashable] = set()
        self._template: dict[str, Any] = {}
        self._sequence = 0

    def _answer(self) -> list[dict[str, Any]]:
        return _by_choice(
            (choice, fld, self._guards[channel].text()) for channel, (choice, fld) in self._fields.items()
        )

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

    def _guard(self, piece: StreamPiece) -> StreamGuard:
        channel = piece.channel
        guard = self._guards.get(channel)
        if guard is None:
            compiled = self._applied.policy
            guard = self._guards[channel] = StreamGuard(
                compiled,
                self._applied.placeholders,
                self._applied.report,
                restore=compiled.policy.restore,
                holdback=compiled.policy.holdback,
                json_text=piece.json_text,
            )
            self._fields[channel] = (piece.choice, piece.field)
            self._sent[channel] = []
        return guard

    def _emit(self, event: bytes) -> bytes | None:
        data = _data_line(event)
        if data is None:
            return event + b"\n\n"
        if data == DONE:
            self.done = True
            try:
                flushed = self._encode_all(self._release_open(None))
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
        if not self._inspect(payload, record=False):
            return None
        template = self._format.stream_template(payload)
        if template is not None:
            self._template = template
        try:
            before, keep = self._rewrite(payload)
        except Blocked:
            return self._block()
        return self._encode_all(before + ([payload] if keep else []))

    def _rewrite(self, payload: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        """Pass each channel's text through its guard. Returns the events that must go out before this
        one (held text released at a channel's end) and whether this one is worth sending."""
        pieces = list(self._format.stream_pieces(payload))
        if not pieces:
            return [], True
        before: list[dict[str, Any]] = []
        worth_sending = usage_of(payload) is not None or self._format.stream_end(payload)
        for piece in pieces:
            if piece is None:
                worth_sending = True
                continue
            if piece.whole:
                self._write_whole(piece, before)
                worth_sending = True
            elif piece.channel is not None and (piece.text is not None or piece.carries_text):
                out = self._feed(piece, payload)
                if out or piece.other_fields or piece.ends:
                    worth_sending = True
            elif piece.channel is not None and piece.ends:
                before.extend(self._release(piece.channel))
                worth_sending = True
            if piece.finish_reason:
                before.extend(self._release_open(piece.choice))
                worth_sending = True
            if piece.other_fields:
                worth_sending = True
        return before, worth_sending

    def _feed(self, piece: StreamPiece, payload: dict[str, Any]) -> str:
        channel = piece.channel
        if channel in self._ended:
            piece.write("")
            return ""
        guard = self._guard(piece)
        text = piece.text or ""
        out = guard.feed(text) if text else ""
        if piece.ends or piece.finish_reason:
            out += guard.finish()
            self._ended.add(channel)
        if text:
            self._last[channel] = (payload, piece)
        piece.write(out)
        self._sent[channel].append(out)
        if out != text and piece.logprobs_holder is not None:
            _drop_logprobs(piece.logprobs_holder)
        return out

    def _write_whole(self, piece: StreamPiece, before: list[dict[str, Any]]) -> None:
        channel = piece.channel
        if channel not in self._ended:
            if channel in self._guards:
                before.extend(self._release(channel))
            else:  # the text arrives whole, with no deltas before it: check it in one piece
                guard = self._guard(piece)
                self._sent[channel].append(guard.feed(piece.text or "") + guard.finish())
                self._ended.add(channel)
        released = "".join(self._sent.get(channel, ()))
        if released != piece.text and piece.logprobs_holder is not None:
            _drop_logprobs(piece.logprobs_holder)
        piece.write(released)

    def _release(self, channel: Hashable) -> list[dict[str, Any]]:
        """End a channel: its held-back text, as an event of its own (none when nothing was held)."""
        if channel in self._ended or channel not in self._guards:
            self._ended.add(channel)
            return []
        self._ended.add(channel)
        rest = self._guards[channel].finish()
        if not rest:
            return []
        self._sent[channel].append(rest)
        event, piece = self._last[channel]
        return [self._format.release_event(self._template, event, piece, rest)]

    def _release_open(self, choice: int | None) -> list[dict[str, Any]]:
        """End every open channel (of one choice, or all): the stream or the choice ended."""
        events = []
        for channel, (owner, _) in list(self._fields.items()):
            if choice is None or owner == choice:
                events.extend(self._release(channel))
        return events

    def _block(self) -> bytes:
        self.blocked = self.done = True
        self._finish_reason = "content_filter"
        open_choices = sorted({c for ch, (c, _) in self._fields.items() if ch not in self._ended}) or [0]
        events = self._encode_all(self._format.block_events(self._template, open_choices))
        return events + (b"data: [DONE]\n\n" if self._format.done_marker else b"")

    def _encode_all(self, events: list[dict[str, Any]]) -> bytes:
        out = []
        for event in events:
            if "sequence_number" in event:
                # Typed streams number their events; released and blocking events shift the count.
                event["sequence_number"] = self._sequence
                self._sequence += 1
            out.append(self._format.encode(event))
        return b"".join(out)

    def finish(self) -> bytes:
        tail = super().finish()
        if self.blocked or self.done:
            return tail
        try:
            return tail + self._encode_all(self._release_open(None))
        except Blocked:
            return tail + self._block()


def _drop_logprobs(holder: dict[str, Any]) -> None:
    value = holder.get("logprobs")
    if value:
        holder["logprobs"] = [] if isinstance(value, list) else None


def _by_choice(texts: Any) -> list[dict[str, Any]]:
    """Per choice: its content (and refusal) text, and its tool calls' arguments in order."""
    answer: dict[int, dict[str, Any]] = {}
    for choice, fld, text in texts:
        record = answer.setdefault(choice, {"index": choice})
        if fld in ("content", "refusal"):
            record[fld] = record.get(fld, "") + text
        else:
            record.setdefault(fld, []).append(text)
    for record in answer.values():
        record.setdefault("content", "")
    return [answer[i] for i in sorted(answer)]


def _data_line(event: bytes) -> bytes | None:
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            return line[5:].strip()
    return None
