"""OpenAI chat completions (`POST /v1/chat/completions`).

Request texts, whatever the role: each message's `content` (a string, or the `text` of its text parts),
`name`, `refusal`, the strings inside assistant `tool_calls[].function.arguments` (and the legacy
`function_call`), tool results, `prediction.content`, and the application's definitions: tool and
function descriptions and parameter schemas, `response_format`'s schema (every string but a schema's
structural keywords). Images and audio are not text and pass as they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from proxy.formats import validation
from proxy.formats.base import Slot, encoded_json, json_leaves, text_of, text_parts
from proxy.formats.choices import Choices

_TEXT_PARTS = frozenset({"text", "input_text", "refusal"})


class ChatFormat(Choices):
    route = "chat.completions"
    path = "chat/completions"

    def __init__(self) -> None:
        super().__init__(delta_events=True)

    def check(self, payload: dict[str, Any]) -> str:
        return validation.check_chat(payload)

    def prompt(self, payload: dict[str, Any]) -> Any:
        return payload.get("messages")

    def request_texts(self, payload: dict[str, Any]) -> Iterator[Slot]:
        messages = payload.get("messages")
        for message in messages if isinstance(messages, list) else ():
            if isinstance(message, dict):
                yield from message_texts(message)
        prediction = payload.get("prediction")
        if isinstance(prediction, dict):
            yield from text_parts(prediction, "content", _TEXT_PARTS)
        yield from definitions(payload)


def message_texts(message: dict[str, Any]) -> Iterator[Slot]:
    yield from text_parts(message, "content", _TEXT_PARTS)
    yield from text_of(message, "name")
    yield from text_of(message, "refusal")
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            yield from encoded_json(function, "arguments")
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        yield from encoded_json(legacy, "arguments")


def definitions(payload: dict[str, Any]) -> Iterator[Slot]:
    """Tool and function descriptions and schemas, and the answer's schema: text the application wrote,
    which the model reads like the prompt (a key or an address pasted there reaches it the same way)."""
    tools = payload.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict):
            yield from _definition(function)
    functions = payload.get("functions")
    for function in functions if isinstance(functions, list) else ():
        if isinstance(function, dict):
            yield from _definition(function)
    response_format = payload.get("response_format")
    if isinstance(response_format, dict):
        schema = response_format.get("json_schema")
        if isinstance(schema, dict):
            yield from _definition(schema, schema_key="schema")


def _definition(holder: dict[str, Any], schema_key: str = "parameters") -> Iterator[Slot]:
    for slot in text_of(holder, "description"):
        slot.field = "definition"
        yield slot
    schema = holder.get(schema_key)
    if isinstance(schema, dict | list):
        for slot in json_leaves(schema, schema=True):
            slot.field = "definition"
            yield slot


CHAT = ChatFormat()
