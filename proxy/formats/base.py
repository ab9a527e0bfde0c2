"""What every wire format provides, and the pieces they share (slots, usage)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(slots=True)
class Slot:
    """A text inside a JSON document, and where to write its replacement."""

    holder: dict[str, Any] | list[Any]
    key: str | int
    text: str

    def write(self, value: str) -> None:
        self.holder[self.key] = value  # type: ignore[index]


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


@dataclass(slots=True)
class StreamPiece:
    """One choice's part of a stream event: its text (None when the event carries none), where that text
    lives, and whether the choice ends here."""

    index: int
    holder: dict[str, Any]
    key: str
    text: str | None
    finish_reason: str | None
    # True when the event carries other news for this choice (a role, a tool call): worth sending
    # even when the guarded text is held back.
    other_fields: bool

    def write(self, text: str) -> None:
        if self.key in self.holder or text:
            self.holder[self.key] = text


class WireFormat(Protocol):
    route: str  # "chat.completions": the name policies, rows and transcripts use
    path: str  # "chat/completions": under /v1 at Warden and at the upstream
    streams: bool

    def check(self, payload: dict[str, Any]) -> str:
        """Validate what Warden acts on; the model name. Raises ProxyError (400) with a clear message."""
        ...

    def prompt(self, payload: dict[str, Any]) -> Any:
        """What a transcript keeps of the request."""
        ...

    def request_texts(self, payload: dict[str, Any]) -> Iterator[Slot]:
        """Every text of the request that reaches the upstream."""
        ...

    def answer_texts(self, body: dict[str, Any]) -> Iterator[tuple[dict[str, Any], Slot | None]]:
        """Each choice of a JSON answer with its text slot (None: no text)."""
        ...

    def stream_pieces(self, event: dict[str, Any]) -> Iterator[StreamPiece | None]:
        """Each choice's piece of one stream event (None: a malformed choice, passed on untouched)."""
        ...

    def stream_template(self, event: dict[str, Any]) -> dict[str, Any]:
        """The fields a stream event Warden builds copies from the upstream's events (id, model...)."""
        ...

    def stream_chunk(
        self, template: dict[str, Any], index: int, text: str | None, finish_reason: str | None
    ) -> dict[str, Any]:
        """A stream event of this format carrying `text` for one choice."""
        ...

    def first_text(self, answer: Any) -> str:
        """The first choice's text in what a transcript keeps of an answer."""
        ...


def usage_of(body: Mapping[str, Any]) -> Usage | None:
    """Token counts from the `usage` of an answer or stream event; None when it carries none."""
    usage = body.get("usage")
    if not isinstance(usage, Mapping) or not usage:
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else 0
    return Usage(_count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")), _count(cached))


def finish_reason(choices: Any) -> str:
    """The first non-empty finish reason of a list of choices."""
    for choice in choices if isinstance(choices, list) else ():
        reason = choice.get("finish_reason") if isinstance(choice, dict) else None
        if isinstance(reason, str) and reason:
            return reason
    return ""


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return min(value, 2**32 - 1)


def string_or_strings(payload: dict[str, Any], field: str) -> Iterator[Slot]:
    """The texts of a field that holds a string or a list (whose non-string items carry no text)."""
    value = payload.get(field)
    if isinstance(value, str):
        yield Slot(payload, field, value)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                yield Slot(value, index, item)
