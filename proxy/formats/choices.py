"""Answers shaped as OpenAI `choices`: chat completions and (legacy) completions.

An answer choice holds its text in `message.content` (chat) or `text` (completions), a refusal in
`message.refusal`, and tool calls in `message.tool_calls[].function.arguments` (JSON source, the model's
own text). A stream event choice carries the same in `delta`. Each is a channel of its own: the output
rules see every one, and a value restored into arguments is JSON-escaped. `logprobs` repeat a choice's
text token by token, so they are dropped whenever the rules changed that text.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from proxy.formats.base import Slot, StreamPiece, Usage, as_list, data_event, finish_reason, usage_of

# Choice fields that carry nothing a guard must see; anything else makes an event worth sending.
_PLAIN_CHOICE_FIELDS = frozenset({"index", "delta", "text", "logprobs", "finish_reason"})


class Choices:
    """Reading and writing the texts of `choices`; `delta_events` picks the shape of events Warden
    builds itself (chat: `delta.content`; completions: `text`)."""

    streams = True
    done_marker = True  # the stream ends with `data: [DONE]`
    error_shape = "openai"

    def __init__(self, *, delta_events: bool) -> None:
        self._delta_events = delta_events

    # -- JSON answers ------------------------------------------------------------------------------

    def answer_texts(self, body: dict[str, Any]) -> Iterator[tuple[dict[str, Any], Slot | None]]:
        for choice in as_list(body.get("choices")):
            if not isinstance(choice, dict):
                continue
            message = choice.get("message")
            if not isinstance(message, dict):
                text = choice.get("text")
                yield choice, Slot(choice, "text", text) if isinstance(text, str) else None
                continue
            found = False
            for key in ("content", "refusal"):
                value = message.get(key)
                if isinstance(value, str):
                    found = True
                    yield choice, Slot(message, key, value, key)
            for call in _tool_calls(message):
                function = call["function"]
                found = True
                yield choice, Slot(function, "arguments", function["arguments"], "arguments", json_text=True)
            if not found:
                yield choice, None

    def block_choice(self, choice: dict[str, Any]) -> None:
        message = choice.get("message")
        if isinstance(message, dict):
            message["content"] = ""
            for key in ("tool_calls", "function_call", "refusal", "audio"):
                message.pop(key, None)
        else:
            choice["text"] = ""
        choice["finish_reason"] = "content_filter"
        self.scrub(choice)

    def scrub(self, choice: dict[str, Any]) -> None:
        if choice.get("logprobs") is not None:
            choice["logprobs"] = None

    def summary(self, body: dict[str, Any]) -> tuple[Usage | None, str, int]:
        choices = body.get("choices")
        return usage_of(body), finish_reason(choices), len(choices) if isinstance(choices, list) else 0

    # -- streams -----------------------------------------------------------------------------------

    def stream_pieces(self, event: dict[str, Any]) -> Iterator[StreamPiece | None]:
        choices = event.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict) or not isinstance(choice.get("index", 0), int):
                yield None
                continue
            index = choice.get("index", 0)
            reason = choice.get("finish_reason")
            reason = reason if isinstance(reason, str) and reason else None
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                text = choice.get("text")
                other = bool(set(choice) - _PLAIN_CHOICE_FIELDS)
                yield StreamPiece(
                    (index, "content"),
                    index,
                    choice,
                    "text",
                    text if isinstance(text, str) else None,
                    reason,
                    other,
                    logprobs_holder=choice,
                )
                continue
            text = delta.get("content")
            other = bool(set(choice) - _PLAIN_CHOICE_FIELDS) or bool(
                set(delta) - {"content", "refusal", "tool_calls"}
            )
            yield StreamPiece(
                (index, "content"),
                index,
                delta,
                "content",
                text if isinstance(text, str) else None,
                reason,
                other,
                logprobs_holder=choice,
            )
            refusal = delta.get("refusal")
            if isinstance(refusal, str):
                yield StreamPiece((index, "refusal"), index, delta, "refusal", refusal, field="refusal")
            calls = delta.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                if not isinstance(call, dict) or not isinstance(call.get("index", 0), int):
                    yield None
                    continue
                function = call.get("function")
                arguments = function.get("arguments") if isinstance(function, dict) else None
                yield StreamPiece(
                    (index, "tool", call.get("index", 0)),
                    index,
                    function if isinstance(function, dict) else call,
                    "arguments",
                    arguments if isinstance(arguments, str) else None,
                    # An id, a name or a type is news the client needs even while arguments are held.
                    other_fields=bool(set(call) - {"index", "function"})
                    or bool(isinstance(function, dict) and set(function) - {"arguments"}),
                    field="arguments",
                    json_text=True,
                )

    def stream_usage(self, event: dict[str, Any], seen: Usage | None) -> Usage | None:
        usage = usage_of(event)
        return usage if usage is not None else seen

    def stream_end(self, event: dict[str, Any]) -> bool:
        return False  # chat and completions streams end with `data: [DONE]`

    def stream_template(self, event: dict[str, Any]) -> dict[str, Any] | None:
        if not isinstance(event.get("choices"), list):
            return None
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

    def release_event(
        self, template: dict[str, Any], event: dict[str, Any], piece: StreamPiece, text: str
    ) -> dict[str, Any]:
        channel = piece.channel
        if isinstance(channel, tuple) and len(channel) == 3:
            call = {"index": channel[2], "function": {"arguments": text}}
            delta: dict[str, Any] = {"tool_calls": [call]}
            return {**template, "choices": [{"index": piece.choice, "delta": delta, "finish_reason": None}]}
        if piece.field == "refusal":
            choice = {"index": piece.choice, "delta": {"refusal": text}, "finish_reason": None}
            return {**template, "choices": [choice]}
        return self.stream_chunk(template, piece.choice, text, None)

    def block_events(self, template: dict[str, Any], choices: list[int]) -> list[dict[str, Any]]:
        return [self.stream_chunk(template, i, None, "content_filter") for i in choices]

    def encode(self, event: dict[str, Any]) -> bytes:
        return data_event(event)

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


def _tool_calls(message: dict[str, Any]) -> Iterator[dict[str, Any]]:
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            yield call
    legacy = message.get("function_call")
    if isinstance(legacy, dict) and isinstance(legacy.get("arguments"), str):
        yield {"function": legacy}
