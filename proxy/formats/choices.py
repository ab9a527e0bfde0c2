"""Answers shaped as OpenAI `choices`: chat completions and (legacy) completions.

An answer choice holds its text in `message.content` (chat) or `text` (completions); a stream event
choice in `delta.content` or `text`. Both readers accept either shape, as upstreams mix them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from proxy.formats.base import Slot, StreamPiece

# Choice fields that carry nothing a guard must see; anything else makes an event worth sending.
_PLAIN_CHOICE_FIELDS = frozenset({"index", "delta", "text", "logprobs", "finish_reason"})


class Choices:
    """Reading and writing the texts of `choices`; `delta_events` picks the shape of events Warden
    builds itself (chat: `delta.content`; completions: `text`)."""

    streams = True

    def __init__(self, *, delta_events: bool) -> None:
        self._delta_events = delta_events

    def answer_texts(self, body: dict[str, Any]) -> Iterator[tuple[dict[str, Any], Slot | None]]:
        for choice in body.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            message = choice.get("message")
            holder, key = (message, "content") if isinstance(message, dict) else (choice, "text")
            text = holder.get(key)
            yield choice, Slot(holder, key, text) if isinstance(text, str) else None

    def stream_pieces(self, event: dict[str, Any]) -> Iterator[StreamPiece | None]:
        choices = event.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict) or not isinstance(choice.get("index", 0), int):
                yield None
                continue
            delta = choice.get("delta")
            holder, key = (delta, "content") if isinstance(delta, dict) else (choice, "text")
            text = holder.get(key)
            other = bool(set(choice) - _PLAIN_CHOICE_FIELDS)
            if isinstance(delta, dict):
                other = other or bool(set(delta) - {"content"})
            reason = choice.get("finish_reason")
            yield StreamPiece(
                choice.get("index", 0),
                holder,
                key,
                text if isinstance(text, str) else None,
                reason if isinstance(reason, str) and reason else None,
                other,
            )

    def stream_template(self, event: dict[str, Any]) -> dict[str, Any]:
        return {k: event[k] for k in ("id", "object", "created", "model") if k in event}

    def stream_chunk(
        self, template: dict[str, Any], index: int, text: str | None, finish_reason: str | None
    ) -> dict[str, Any]:
        if self._delta_events:
            choice: dict[str, Any] = {"index": index, "delta": {"content": text} if text else {}}
        else:
            choice = {"index": index, "text": text or ""}
        choice["finish_reason"] = finish_reason
        return {**template, "choices": [choice]}

    def first_text(self, answer: Any) -> str:
        """From a JSON answer's choices, or the `{"index", "content"}` list a guarded or streamed
        answer leaves."""
        if not isinstance(answer, list) or not answer or not isinstance(answer[0], dict):
            return ""
        first = answer[0]
        message = first.get("message")
        text = (
            message.get("content") if isinstance(message, dict) else first.get("content", first.get("text"))
        )
        return text if isinstance(text, str) else ""
