"""Anthropic Messages API (`POST /v1/messages`).

Request texts: `system` (a string or text blocks), each message's content (a string, or its blocks:
`text`, the strings inside `tool_use.input`, `tool_result` content, plain-text `document` sources), and
the definitions (tool descriptions and input schemas). `thinking` blocks are signed by the provider and
must come back unchanged: they are not rewritten.

Answers: `text` blocks and the strings inside `tool_use.input`. A stream builds each content block from
`content_block_delta` events (`text_delta`, or `input_json_delta` with JSON source) and closes it with
`content_block_stop`; `message_delta` carries the stop reason and the output token count.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from proxy.errors import bad_request
from proxy.formats.base import (
    Slot,
    StreamPiece,
    Usage,
    as_list,
    json_leaves,
    text_of,
    typed_event,
    usage_of,
)

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class MessagesFormat:
    route = "messages"
    path = "messages"
    streams = True
    done_marker = False
    error_shape = "anthropic"
    api = "messages"
    needs_max_tokens = True

    def check(self, payload: dict[str, Any]) -> str:
        model = payload.get("model")
        if not isinstance(model, str) or not model.strip():
            raise bad_request("'model' is required: a non-empty string.", param="model")
        max_tokens = payload.get("max_tokens")
        if self.needs_max_tokens and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise bad_request("'max_tokens' is required: an integer of at least 1.", param="max_tokens")
        if payload.get("stream") is not None and not isinstance(payload.get("stream"), bool):
            raise bad_request("'stream' must be a boolean.", param="stream")
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            raise bad_request("'messages' is required: a non-empty array.", param="messages")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                raise bad_request(
                    f"'messages[{index}]' must be an object with role 'user' or 'assistant'.",
                    param=f"messages[{index}]",
                )
            if not isinstance(message.get("content"), str | list):
                raise bad_request(
                    f"'messages[{index}].content' must be a string or an array of blocks.",
                    param=f"messages[{index}].content",
                )
        system = payload.get("system")
        if system is not None and not isinstance(system, str | list):
            raise bad_request("'system' must be a string or an array of text blocks.", param="system")
        tools = payload.get("tools")
        if tools is not None and not isinstance(tools, list):
            raise bad_request("'tools' must be an array.", param="tools")
        return model

    def prompt(self, payload: dict[str, Any]) -> Any:
        return {"system": payload.get("system"), "messages": payload.get("messages")}

    def request_texts(self, payload: dict[str, Any]) -> Iterator[Slot]:
        yield from _blocks(payload, "system")
        messages = payload.get("messages")
        for message in messages if isinstance(messages, list) else ():
            if isinstance(message, dict):
                yield from _blocks(message, "content")
        tools = payload.get("tools")
        for tool in tools if isinstance(tools, list) else ():
            if not isinstance(tool, dict):
                continue
            for slot in text_of(tool, "description"):
                slot.field = "definition"
                yield slot
            schema = tool.get("input_schema")
            if isinstance(schema, dict):
                for slot in json_leaves(schema, schema=True):
                    slot.field = "definition"
                    yield slot

    # -- JSON answers ------------------------------------------------------------------------------

    def answer_texts(self, body: dict[str, Any]) -> Iterator[tuple[dict[str, Any], Slot | None]]:
        found = False
        for block in as_list(body.get("content")):
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                found = True
                yield body, Slot(block, "text", block["text"])
            elif block.get("type") == "tool_use" and isinstance(block.get("input"), dict | list):
                for slot in json_leaves(block["input"]):
                    found = True
                    slot.field = "arguments"
                    yield body, slot
        if not found:
            yield body, None

    def block_choice(self, choice: dict[str, Any]) -> None:
        choice["content"] = [{"type": "text", "text": ""}]
        choice["stop_reason"] = "refusal"
        choice["stop_sequence"] = None

    def scrub(self, choice: dict[str, Any]) -> None:
        return None  # Anthropic answers carry no logprobs

    def summary(self, body: dict[str, Any]) -> tuple[Usage | None, str, int]:
        return usage_of(body), _STOP_REASONS.get(str(body.get("stop_reason")), ""), 1

    # -- streams -----------------------------------------------------------------------------------

    def stream_pieces(self, event: dict[str, Any]) -> Iterator[StreamPiece | None]:
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta")
            index = event.get("index", 0)
            if not isinstance(delta, dict):
                yield None
            elif delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                yield StreamPiece((index,), 0, delta, "text", delta["text"])
            elif delta.get("type") == "input_json_delta" and isinstance(delta.get("partial_json"), str):
                yield StreamPiece(
                    (index,),
                    0,
                    delta,
                    "partial_json",
                    delta["partial_json"],
                    field="arguments",
                    json_text=True,
                )
        elif kind == "content_block_start":
            block = event.get("content_block")
            # A block starts empty in practice; text given here is read like a first delta.
            if isinstance(block, dict) and block.get("type") == "text" and block.get("text"):
                yield StreamPiece(
                    (event.get("index", 0),), 0, block, "text", block["text"], other_fields=True
                )
        elif kind == "content_block_stop":
            yield StreamPiece((event.get("index", 0),), 0, event, "", None, ends=True, carries_text=False)
        elif kind == "message_delta":
            delta = event.get("delta")
            reason = delta.get("stop_reason") if isinstance(delta, dict) else None
            if isinstance(reason, str) and reason:
                yield StreamPiece(
                    None,
                    0,
                    event,
                    "",
                    None,
                    _STOP_REASONS.get(reason, reason),
                    other_fields=True,
                    carries_text=False,
                )

    def stream_usage(self, event: dict[str, Any], seen: Usage | None) -> Usage | None:
        kind = event.get("type")
        if kind == "message_start" and isinstance(event.get("message"), dict):
            return usage_of(event["message"]) or seen
        if kind == "message_delta":
            usage = event.get("usage")
            if isinstance(usage, dict):
                # Output tokens are cumulative here; input counts, when repeated, replace the first ones.
                new = usage_of(event) or Usage()
                before = seen or Usage()
                return Usage(
                    new.prompt_tokens if "input_tokens" in usage else before.prompt_tokens,
                    new.completion_tokens,
                    new.cached_tokens or before.cached_tokens,
                )
        return seen

    def stream_end(self, event: dict[str, Any]) -> bool:
        return event.get("type") == "message_stop"

    def stream_template(self, event: dict[str, Any]) -> dict[str, Any] | None:
        message = event.get("message")
        if event.get("type") == "message_start" and isinstance(message, dict):
            return dict(message)
        return None

    def stream_chunk(
        self, template: dict[str, Any], index: int, text: str | None, finish_reason: str | None
    ) -> dict[str, Any]:
        raise TypeError("Anthropic events are built from the upstream's own (release_event)")

    def release_event(
        self, template: dict[str, Any], event: dict[str, Any], piece: StreamPiece, text: str
    ) -> dict[str, Any]:
        delta = event.get("delta")
        if isinstance(delta, dict):
            return {**event, "delta": {**delta, piece.key: text}}
        index = piece.channel[0] if isinstance(piece.channel, tuple) else 0
        return {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}

    def block_events(self, template: dict[str, Any], choices: list[int]) -> list[dict[str, Any]]:
        return [
            {
                "type": "message_delta",
                "delta": {"stop_reason": "refusal", "stop_sequence": None},
                "usage": {"output_tokens": 0},
            },
            {"type": "message_stop"},
        ]

    def encode(self, event: dict[str, Any]) -> bytes:
        return typed_event(event)

    def first_text(self, answer: Any) -> str:
        if isinstance(answer, dict):
            for block in as_list(answer.get("content")):
                if isinstance(block, dict) and block.get("type") == "text":
                    text = block.get("text")
                    return text if isinstance(text, str) else ""
            return ""
        if isinstance(answer, list) and answer and isinstance(answer[0], dict):
            text = answer[0].get("content")
            return text if isinstance(text, str) else ""
        return ""


def _blocks(holder: dict[str, Any], key: str) -> Iterator[Slot]:
    content = holder.get(key)
    if isinstance(content, str):
        if content:
            yield Slot(holder, key, content)
        return
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            yield from text_of(block, "text")
        elif kind == "tool_use" and isinstance(block.get("input"), dict | list):
            for slot in json_leaves(block["input"]):
                slot.field = "arguments"
                yield slot
        elif kind == "tool_result":
            yield from _blocks(block, "content")
        elif kind == "document":
            source = block.get("source")
            if isinstance(source, dict) and source.get("type") == "text":
                yield from text_of(source, "data")
            yield from text_of(block, "context")
            yield from text_of(block, "title")


MESSAGES = MessagesFormat()


class CountTokensFormat(MessagesFormat):
    """`POST /v1/messages/count_tokens`: a Messages request without `max_tokens`, answered with a count.
    Its texts reach the upstream like a message's, so the input rules see them the same way; only an
    upstream that speaks Anthropic's API natively can count them."""

    route = "messages.count_tokens"
    path = "messages/count_tokens"
    streams = False
    needs_max_tokens = False

    def check(self, payload: dict[str, Any]) -> str:
        if payload.get("stream"):
            raise bad_request("Token counts cannot be streamed.", param="stream")
        return super().check(payload)

    def answer_texts(self, body: dict[str, Any]) -> Iterator[tuple[dict[str, Any], Slot | None]]:
        return iter(())

    def summary(self, body: dict[str, Any]) -> tuple[Usage | None, str, int]:
        count = body.get("input_tokens")
        return Usage(count if isinstance(count, int) and count >= 0 else 0), "", 0


COUNT_TOKENS = CountTokensFormat()
