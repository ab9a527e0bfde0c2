"""The Responses API's objects as Warden builds them: a response and its output items.

JSON answers and streams build them here alike, so a stream's final `response.completed` holds the
same output (ids included) as the JSON answer for the same upstream reply. Item ids derive from the
response's: `msg_<core>_<output index>` and `fc_<core>_<output index>`.

A response echoes the request's settings (instructions, tools, tool_choice, sampling) when they are
known: a stream is given the request; a JSON answer (`Translation.answer` sees only the upstream body)
reports the API's defaults for them. `store` is always false: nothing is kept to refer back to.
"""

from __future__ import annotations

from typing import Any


def item_id(kind: str, core: str, output_index: int) -> str:
    return f"{kind}_{core}_{output_index}"


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def refusal_part(text: str) -> dict[str, Any]:
    return {"type": "refusal", "refusal": text}


def message_item(id_: str, parts: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {"type": "message", "id": id_, "role": "assistant", "status": status, "content": parts}


def function_call_item(id_: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": id_,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def response(
    request: dict[str, Any] | None,
    *,
    id_: str,
    created_at: float,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    incomplete_details: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    asked = request or {}
    instructions = asked.get("instructions")
    return {
        "id": id_,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "model": model,
        "output": output,
        "usage": usage,
        "error": error,
        "incomplete_details": incomplete_details,
        "instructions": instructions if isinstance(instructions, str) else None,
        "metadata": asked.get("metadata") if isinstance(asked.get("metadata"), dict) else {},
        "parallel_tool_calls": asked.get("parallel_tool_calls") is not False,
        "temperature": asked.get("temperature"),
        "top_p": asked.get("top_p"),
        "max_output_tokens": asked.get("max_output_tokens"),
        "tool_choice": asked.get("tool_choice") or "auto",
        "tools": asked.get("tools") or [],
        "text": asked.get("text") or {"format": {"type": "text"}},
        "previous_response_id": None,
        "store": False,
        "truncation": "disabled",
        "user": asked.get("user"),
    }
