"""The fake's Anthropic Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`).

The answer is one content block: text, or (model `fake-tools` with tools) a `tool_use` of the first
tool with `{"text": <echo>}` as input; when the last message carries `tool_result` blocks, the tools
model answers with their text instead. Streams follow Anthropic's event sequence exactly: message_start,
content_block_start, ping, content_block_delta..., content_block_stop, message_delta, message_stop.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from proxy.upstreams.fake.replies import (
    FakeBehaviour,
    Json,
    Reply,
    Sse,
    answer_text,
    named_frame,
    split,
    text_of,
    word_count,
)


def create(body: dict[str, Any], behaviour: FakeBehaviour) -> Reply:
    tools_model = str(body.get("model", "")).endswith("tools")
    result = _tool_result(body) if tools_model else None
    text = answer_text(behaviour, _echo(body)) if result is None else result
    tools = body.get("tools")
    if tools_model and result is None and isinstance(tools, list) and tools and isinstance(tools[0], dict):
        block: dict[str, Any] = {
            "type": "tool_use",
            "id": f"toolu_{uuid.uuid4().hex[:24]}",
            "name": str(tools[0].get("name") or "f"),
            "input": {"text": text},
        }
        stop_reason, output_tokens = "tool_use", word_count(block["input"])
    else:
        block = {"type": "text", "text": text}
        stop_reason, output_tokens = "end_turn", word_count(text)
    usage = {
        "input_tokens": _input_tokens(body),
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    message = {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": [block],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }
    if not body.get("stream"):
        return Json(message, headers=headers())
    return Sse(_events(message, block, behaviour.chunks), headers())


def count_tokens(body: dict[str, Any], behaviour: FakeBehaviour) -> Reply:
    return Json({"input_tokens": _input_tokens(body)}, headers=headers())


def headers() -> dict[str, str]:
    """What Anthropic sends on every answer and Warden relays: a request id and rate-limit state."""
    return {"request-id": f"req_{uuid.uuid4().hex[:24]}", "anthropic-ratelimit-requests-remaining": "999"}


def _events(message: dict[str, Any], block: dict[str, Any], chunks: int) -> list[bytes]:
    events: list[tuple[str, dict[str, Any]]] = []
    usage = message["usage"]
    # Anthropic's message_start already counts one output token; message_delta gives the final count.
    started = dict(message, content=[], stop_reason=None, usage=dict(usage, output_tokens=1))
    events.append(("message_start", {"message": started}))
    if block["type"] == "tool_use":
        events.append(("content_block_start", {"index": 0, "content_block": dict(block, input={})}))
        deltas = [
            {"type": "input_json_delta", "partial_json": p} for p in split(json.dumps(block["input"]), chunks)
        ]
    else:
        events.append(("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}))
        deltas = [{"type": "text_delta", "text": piece} for piece in split(block["text"], chunks)]
    events.append(("ping", {}))
    events += [("content_block_delta", {"index": 0, "delta": delta}) for delta in deltas]
    events.append(("content_block_stop", {"index": 0}))
    events.append(
        (
            "message_delta",
            {
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {}))
    return [named_frame(name, {"type": name, **payload}) for name, payload in events]


def _echo(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            text = text_of(message.get("content"), ("text",))
            if text is not None:
                return text
    return "hello"


def _tool_result(body: dict[str, Any]) -> str | None:
    """The text of the `tool_result` blocks of the last message, or None when it has none."""
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    content = last.get("content") if isinstance(last, dict) else None
    if not isinstance(content, list):
        return None
    results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
    if not results:
        return None
    return "".join(text_of(b.get("content"), ("text",)) or "" for b in results)


def _input_tokens(body: dict[str, Any]) -> int:
    return word_count(body.get("messages") or []) + word_count(body.get("system") or "")
