"""The fake's OpenAI chat completions, (legacy) completions and embeddings.

A chat model whose name ends with `tools` answers tool calls when tools are sent, unless the last message
is a tool's result (`role: tool`): then it answers with that result's text."""

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
    data_frame,
    logprob,
    split,
    text_of,
)


def chat(body: dict[str, Any], behaviour: FakeBehaviour) -> Reply:
    return _completion(body, behaviour, chat=True)


def completions(body: dict[str, Any], behaviour: FakeBehaviour) -> Reply:
    return _completion(body, behaviour, chat=False)


def embeddings(body: dict[str, Any], behaviour: FakeBehaviour) -> Reply:
    inputs = body.get("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    data = [
        {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3, float(len(str(item)))]}
        for i, item in enumerate(items)
    ]
    tokens = sum(len(str(item).split()) for item in items)
    return Json(
        {
            "object": "list",
            "data": data,
            "model": body.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def _echo(body: dict[str, Any], chat: bool) -> str:
    if chat:
        for message in reversed(body.get("messages") or []):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                return content if isinstance(content, str) else json.dumps(content)
        return "hello"
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else "hello"


def _tool_result(body: dict[str, Any]) -> str | None:
    """The text of the last message when it is a tool's result, else None."""
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    if not isinstance(last, dict) or last.get("role") != "tool":
        return None
    return text_of(last.get("content"), ("text",)) or ""


def _completion(body: dict[str, Any], behaviour: FakeBehaviour, chat: bool) -> Reply:
    tools_model = chat and str(body.get("model", "")).endswith("tools")
    result = _tool_result(body) if tools_model else None
    text = answer_text(behaviour, _echo(body, chat)) if result is None else result
    pieces = split(text, behaviour.chunks)
    n = body.get("n") or 1
    prompt_tokens = len(json.dumps(body.get("messages") or body.get("prompt") or "").split())
    completion_tokens = len(text.split()) * n
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    tool_call = None
    if tools_model and result is None and body.get("tools"):
        function = body["tools"][0].get("function", {})
        tool_call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": function.get("name", "f"), "arguments": json.dumps({"text": text})},
        }
    # Chat's `logprobs: true` (legacy completions take a number and another shape: not faked).
    with_logprobs = chat and body.get("logprobs") is True
    if body.get("stream"):
        return _stream(body, pieces, n, usage, chat, tool_call, with_logprobs)
    choices = []
    for index in range(n):
        if chat:
            message: dict[str, Any] = {"role": "assistant", "content": None if tool_call else text}
            if tool_call:
                message["tool_calls"] = [tool_call]
            tokens = [] if tool_call else pieces
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "logprobs": _logprobs(tokens) if with_logprobs else None,
                    "finish_reason": "tool_calls" if tool_call else "stop",
                }
            )
        else:
            choices.append({"index": index, "text": text, "logprobs": None, "finish_reason": "stop"})
    return Json(
        {
            "id": f"fake-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": choices,
            "usage": usage,
        },
        headers={"x-ratelimit-remaining-requests": "999"},
    )


def _stream(
    body: dict[str, Any],
    pieces: list[str],
    n: int,
    usage: dict[str, Any],
    chat: bool,
    tool_call: dict[str, Any] | None,
    with_logprobs: bool,
) -> Sse:
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base: dict[str, Any] = {
        "id": f"fake-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": body.get("model"),
    }
    if include_usage:
        base["usage"] = None
    frames = []
    for position, piece in enumerate(pieces):
        choices = []
        for index in range(n):
            if chat:
                delta: dict[str, Any] = {"content": piece}
                if position == 0:
                    delta["role"] = "assistant"
                logprobs = _logprobs([piece]) if with_logprobs else None
                choices.append({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": None})
            else:
                choices.append({"index": index, "text": piece, "logprobs": None, "finish_reason": None})
        frames.append(data_frame(dict(base, choices=choices)))
    final = []
    for index in range(n):
        if chat:
            delta = {"tool_calls": [dict(tool_call, index=0)]} if tool_call else {}
            reason = "tool_calls" if tool_call else "stop"
            final.append({"index": index, "delta": delta, "finish_reason": reason})
        else:
            final.append({"index": index, "text": "", "finish_reason": "stop"})
    frames.append(data_frame(dict(base, choices=final)))
    if include_usage:
        frames.append(data_frame(dict(base, choices=[], usage=usage)))
    frames.append(data_frame("[DONE]"))
    return Sse(frames)


def _logprobs(tokens: list[str]) -> dict[str, Any]:
    return {"content": [logprob(token) for token in tokens], "refusal": None}
