"""What every wire format provides, and the pieces they share (slots, stream pieces, usage)."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from proxy.jsonbody import NotJson, parse_json

# Keys of a JSON schema whose string values are structure, not prose: never rewritten by a mask.
_SCHEMA_STRUCTURE = frozenset(
    {"type", "$ref", "$schema", "$id", "format", "pattern", "required", "additionalProperties", "$defs"}
)


@dataclass(slots=True)
class Slot:
    """A text inside a JSON document, and where to write its replacement.

    `field` names what the text is in a transcript ("content", "arguments", "refusal"). `json_text`:
    the text is JSON source (tool-call arguments as the model wrote them), so a value restored into it
    is JSON-escaped. `after_write` re-encodes an enclosing JSON string once a leaf inside it changed.
    """

    holder: dict[str, Any] | list[Any]
    key: str | int
    text: str
    field: str = "content"
    json_text: bool = False
    after_write: Callable[[], None] | None = None

    def write(self, value: str) -> None:
        self.holder[self.key] = value  # type: ignore[index]
        if self.after_write is not None:
            self.after_write()


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


@dataclass(slots=True)
class StreamPiece:
    """One channel's part of a stream event. A channel is one text the answer builds up piece by piece:
    a choice's content, one tool call's arguments, one content block.

    `whole`: the event repeats the channel's complete text (a Responses API `.done` event); the relay
    writes back everything it released instead of passing the upstream's copy on. `ends`: the channel
    is complete after this event. `finish_reason`: the whole choice ends here (every channel of it).
    """

    channel: Hashable
    choice: int
    holder: dict[str, Any]
    key: str
    text: str | None
    finish_reason: str | None = None
    # True when the event carries other news (a role, a tool call's name): worth sending even when the
    # guarded text is held back.
    other_fields: bool = False
    ends: bool = False
    whole: bool = False
    # False when the event cannot hold text (an end-of-block event): released text goes out before it.
    carries_text: bool = True
    field: str = "content"
    json_text: bool = False
    # The object whose `logprobs` describe this text token by token: dropped when the text changes.
    logprobs_holder: dict[str, Any] | None = None

    @property
    def index(self) -> int:
        return self.choice

    def write(self, text: str) -> None:
        if self.key in self.holder or text:
            self.holder[self.key] = text


class WireFormat(Protocol):
    route: str  # "chat.completions": the name policies, rows and transcripts use
    path: str  # "chat/completions": under /v1 at Warden and at the upstream
    streams: bool
    done_marker: bool  # streams end with `data: [DONE]`
    error_shape: str  # "openai" | "anthropic": how Warden's own errors are written on this route

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
        """Each choice of a JSON answer with each of its text slots (None: a choice without text)."""
        ...

    def block_choice(self, choice: dict[str, Any]) -> None:
        """Empty a choice the output rules blocked, and mark it as filtered."""
        ...

    def scrub(self, choice: dict[str, Any]) -> None:
        """Drop what repeats a choice's original text token by token (logprobs): its text changed."""
        ...

    def summary(self, body: dict[str, Any]) -> tuple[Usage | None, str, int]:
        """A JSON answer's usage, finish reason (in chat completions' words) and number of choices."""
        ...

    def stream_pieces(self, event: dict[str, Any]) -> Iterator[StreamPiece | None]:
        """Each channel's piece of one stream event (None: a malformed choice, passed on untouched)."""
        ...

    def stream_usage(self, event: dict[str, Any], seen: Usage | None) -> Usage | None:
        """The usage known after this event (`seen`: what earlier events reported)."""
        ...

    def stream_end(self, event: dict[str, Any]) -> bool:
        """True for the event that ends a stream (formats with `data: [DONE]` never say so)."""
        ...

    def stream_template(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The fields events Warden builds copy from the upstream's (id, model...); None: not this event."""
        ...

    def stream_chunk(
        self, template: dict[str, Any], index: int, text: str | None, finish_reason: str | None
    ) -> dict[str, Any]:
        """A stream event of this format carrying `text` for one choice's content."""
        ...

    def release_event(
        self, template: dict[str, Any], event: dict[str, Any], piece: StreamPiece, text: str
    ) -> dict[str, Any]:
        """An event that carries `text` on the channel of `piece`, the last text piece of that channel
        (from `event`): held-back text released when the channel ends."""
        ...

    def block_events(self, template: dict[str, Any], choices: list[int]) -> list[dict[str, Any]]:
        """The events that end a stream the output rules blocked."""
        ...

    def encode(self, event: dict[str, Any]) -> bytes:
        """One SSE event."""
        ...

    def first_text(self, answer: Any) -> str:
        """The first choice's text in what a transcript keeps of an answer."""
        ...


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def data_event(event: dict[str, Any]) -> bytes:
    """An SSE event with a data line only (OpenAI chat and completions)."""
    return b"data: " + dumps(event).encode() + b"\n\n"


def typed_event(event: dict[str, Any]) -> bytes:
    """An SSE event named by its `type` (Responses API, Anthropic Messages)."""
    name = event.get("type")
    head = b"event: " + str(name).encode() + b"\n" if isinstance(name, str) else b""
    return head + b"data: " + dumps(event).encode() + b"\n\n"


def usage_of(body: Mapping[str, Any]) -> Usage | None:
    """Token counts from the `usage` of an answer or stream event; None when it carries none.
    Reads OpenAI's names (prompt/completion) and the Responses and Anthropic ones (input/output)."""
    usage = body.get("usage")
    if not isinstance(usage, Mapping) or not usage:
        return None
    if "input_tokens" in usage or "output_tokens" in usage:
        details = usage.get("input_tokens_details")
        cached = (
            details.get("cached_tokens")
            if isinstance(details, Mapping)
            else usage.get("cache_read_input_tokens")
        )
        return Usage(_count(usage.get("input_tokens")), _count(usage.get("output_tokens")), _count(cached))
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else 0
    return Usage(_count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")), _count(cached))


def as_list(value: Any) -> list[Any]:
    """`value` when it is a list, else an empty one: a field a client or an upstream sent as a number
    or an object (`"summary": 1`) is not iterated (a TypeError, a 500) nor read key by key."""
    return value if isinstance(value, list) else []


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


def string_or_strings(payload: dict[str, Any], key: str) -> Iterator[Slot]:
    """The texts of a field that holds a string or a list (whose non-string items carry no text)."""
    value = payload.get(key)
    if isinstance(value, str):
        yield Slot(payload, key, value)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                yield Slot(value, index, item)


def text_of(holder: dict[str, Any], key: str) -> Iterator[Slot]:
    value = holder.get(key)
    if isinstance(value, str) and value:
        yield Slot(holder, key, value)


def text_parts(holder: dict[str, Any], key: str, part_types: frozenset[str]) -> Iterator[Slot]:
    """`holder[key]` as a string, or the `text` of its parts whose type is one of `part_types`."""
    content = holder.get(key)
    if isinstance(content, str):
        if content:
            yield Slot(holder, key, content)
    elif isinstance(content, list):
        for part in content:
            # A `type` that is a list or an object is no part type (and unhashable: `in` would raise).
            if (
                isinstance(part, dict)
                and isinstance(part.get("type"), str)
                and part["type"] in part_types
                and isinstance(part.get("text"), str)
            ):
                yield Slot(part, "text", part["text"])


def json_leaves(value: Any, *, schema: bool = False) -> Iterator[Slot]:
    """Every string inside a JSON value (keys excluded: they name, they do not say). In a JSON schema
    the structural keywords (`type`, `pattern`...) are skipped: they are code, not prose."""
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        items: Iterator[tuple[Any, Any]]
        if isinstance(node, dict):
            items = iter(node.items())
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        for key, item in items:
            if schema and key in _SCHEMA_STRUCTURE:
                continue
            if isinstance(item, str):
                if item:
                    yield Slot(node, key, item)
            elif isinstance(item, dict | list):
                stack.append(item)


def encoded_json(holder: dict[str, Any], key: str, *, field: str = "arguments") -> Iterator[Slot]:
    """The texts of a JSON document held as a string (tool-call arguments): each string inside it, the
    document re-encoded when one changes, so it stays valid JSON. Text that is not JSON is one slot."""
    source = holder.get(key)
    if not isinstance(source, str) or not source:
        return
    try:
        # The shared parser: `[` x 5000 in arguments is a text to scan, not a RecursionError.
        parsed = parse_json(source.encode("utf-8", "surrogatepass"))
    except NotJson:
        parsed = None
    if not isinstance(parsed, dict | list):
        yield Slot(holder, key, source, field)
        return

    def reencode() -> None:
        holder[key] = dumps(parsed)

    for leaf in json_leaves(parsed):
        leaf.field, leaf.after_write = field, reencode
        yield leaf
