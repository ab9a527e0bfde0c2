"""What the fake's API modules return (a JSON body or a list of SSE frames), and the helpers they share."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# Every token of the fake's answers gets this log-probability: fixed, so tests can look for it.
LOGPROB = -0.25


@dataclass
class FakeBehaviour:
    delay_ms: float = 0.0  # before the first byte
    chunk_delay_ms: float = 0.0  # between stream events
    chunks: int = 8
    words: int = 0  # 0: echo the last user message
    hang_seconds: float = 30.0
    # Answer every POST with this HTTP status (an error body) instead, with `retry-after` when set:
    # an unwell or rate-limited deployment, switched on and off by a test.
    fail_status: int = 0
    retry_after: str = ""


@dataclass(frozen=True, slots=True)
class Json:
    payload: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sse:
    """A whole event stream, written frame by frame (`fake-cut` stops halfway)."""

    frames: list[bytes]
    headers: dict[str, str] = field(default_factory=dict)


Reply = Json | Sse


def answer_text(behaviour: FakeBehaviour, echo: str) -> str:
    """The fake's answer: `words` filler words when set, else the echo of the prompt."""
    if behaviour.words:
        return " ".join(f"word{i}" for i in range(behaviour.words))
    return echo


def split(text: str, parts: int) -> list[str]:
    """`text` in at most `parts` pieces of equal length (the last shorter); never an empty list."""
    if not text:
        return [""]
    parts = max(1, min(parts, len(text)))
    size = -(-len(text) // parts)
    return [text[i : i + size] for i in range(0, len(text), size)]


def word_count(value: Any) -> int:
    """The fake's token count: words of the value as JSON (strings as they are)."""
    return len((value if isinstance(value, str) else json.dumps(value)).split())


def logprob(token: str) -> dict[str, Any]:
    """One entry in the shape chat completions and the Responses API share."""
    return {"token": token, "logprob": LOGPROB, "bytes": list(token.encode()), "top_logprobs": []}


def data_frame(payload: dict[str, Any] | str) -> bytes:
    """An unnamed event (OpenAI's chat and completions streams)."""
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def named_frame(name: str, payload: dict[str, Any]) -> bytes:
    """A typed event (the Responses and Messages APIs): `event:` names what `data:` holds."""
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()


def text_of(content: Any, part_types: tuple[str, ...]) -> str | None:
    """The text of a message's content: a string, or the text of its parts of `part_types`."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in part_types
        ]
        return "".join(texts) if texts else json.dumps(content)
    return None
