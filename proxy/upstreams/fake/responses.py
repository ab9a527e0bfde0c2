"""The fake's OpenAI Responses API (`POST /v1/responses`): a Response object, or its typed event stream.

The answer is one output item: a message with one `output_text` part, or (model `fake-tools` with tools)
a `function_call` to the first tool with `{"text": <echo>}` as arguments; when the last input item is a
`function_call_output`, the tools model answers with that output's text instead, as a model would once
its tool has answered. Streams carry the events the official SDK accumulates, each with a
`sequence_number`, and end with `response.completed` (no [DONE]).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from proxy.upstreams.fake.replies import (
    FakeBehaviour,
    Json,
    Reply,
    Sse,
    answer_text,
    logprob,
    named_frame,
    split,
    text_of,
    word_count,
)

LOGPROBS_INCLUDE = "message.output_text.logprobs"


def respond(body: dict[str, Any], behaviour: FakeBehaviour) -> Reply:
    tools_model = str(body.get("model", "")).endswith("tools")
    result = _tool_result(body) if tools_model else None
    text = answer_text(behaviour, _echo(body)) if result is None else result
    pieces = split(text, behaviour.chunks)
    include = body.get("include")
    with_logprobs = isinstance(include, list) and LOGPROBS_INCLUDE in include
    tool = _first_tool(body) if tools_model and result is None else None
    if tool is not None:
        arguments = json.dumps({"text": text})
        item: dict[str, Any] = {
            "type": "function_call",
            "id": f"fc_{uuid.uuid4().hex[:24]}",
            "call_id": f"call_{uuid.uuid4().hex[:24]}",
            "name": tool,
            "arguments": arguments,
            "status": "completed",
        }
        output_tokens = word_count(arguments)
    else:
        part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
        if with_logprobs:
            part["logprobs"] = [logprob(piece) for piece in pieces]
        item = {
            "type": "message",
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "status": "completed",
            "role": "assistant",
            "content": [part],
        }
        output_tokens = word_count(text)
    input_tokens = word_count(body.get("input") or "")
    usage = {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }
    response = _response(body, "completed", [item], usage)
    if not body.get("stream"):
        return Json(response, headers={"x-ratelimit-remaining-requests": "999"})
    return Sse(_events(response, item, pieces, with_logprobs, behaviour.chunks))


def _events(
    response: dict[str, Any], item: dict[str, Any], pieces: list[str], with_logprobs: bool, chunks: int
) -> list[bytes]:
    events: list[tuple[str, dict[str, Any]]] = []
    started = dict(response, status="in_progress", output=[], usage=None)
    events += [("response.created", {"response": started}), ("response.in_progress", {"response": started})]
    where = {"item_id": item["id"], "output_index": 0}
    if item["type"] == "function_call":
        events.append(
            (
                "response.output_item.added",
                {"output_index": 0, "item": dict(item, arguments="", status="in_progress")},
            )
        )
        for piece in split(item["arguments"], chunks):
            events.append(("response.function_call_arguments.delta", {**where, "delta": piece}))
        events.append(
            (
                "response.function_call_arguments.done",
                {**where, "name": item["name"], "arguments": item["arguments"]},
            )
        )
    else:
        part = item["content"][0]
        where["content_index"] = 0
        events.append(
            (
                "response.output_item.added",
                {"output_index": 0, "item": dict(item, status="in_progress", content=[])},
            )
        )
        events.append(
            (
                "response.content_part.added",
                {**where, "part": {"type": "output_text", "text": "", "annotations": []}},
            )
        )
        for piece in pieces:
            entries = [logprob(piece)] if with_logprobs else []
            events.append(("response.output_text.delta", {**where, "delta": piece, "logprobs": entries}))
        events.append(
            (
                "response.output_text.done",
                {**where, "text": part["text"], "logprobs": part.get("logprobs", [])},
            )
        )
        events.append(("response.content_part.done", {**where, "part": part}))
    events.append(("response.output_item.done", {"output_index": 0, "item": item}))
    events.append(("response.completed", {"response": response}))
    return [
        named_frame(name, {"type": name, "sequence_number": number, **payload})
        for number, (name, payload) in enumerate(events)
    ]


def _response(
    body: dict[str, Any], status: str, output: list[dict[str, Any]], usage: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": f"resp_{uuid.uuid4().hex[:24]}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model"),
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def _echo(body: dict[str, Any]) -> str:
    """`input` when it is a string, else the text of the last user message item."""
    given = body.get("input")
    if isinstance(given, str):
        return given
    for item in reversed(given if isinstance(given, list) else []):
        if isinstance(item, dict) and item.get("role") == "user" and item.get("type", "message") == "message":
            text = text_of(item.get("content"), ("input_text", "text"))
            if text is not None:
                return text
    return "hello"


def _tool_result(body: dict[str, Any]) -> str | None:
    """The text of the last input item when it is a `function_call_output`, else None."""
    given = body.get("input")
    last = given[-1] if isinstance(given, list) and given else None
    if not isinstance(last, dict) or last.get("type") != "function_call_output":
        return None
    return text_of(last.get("output"), ("input_text", "output_text", "text")) or ""


def _first_tool(body: dict[str, Any]) -> str | None:
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools or not isinstance(tools[0], dict):
        return None
    return str(tools[0].get("name") or "f")
