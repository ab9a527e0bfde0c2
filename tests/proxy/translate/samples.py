"""Upstream answers and streams shaped like the real APIs' (ids, field order, usage chunk last), and
helpers to write and read SSE. Each stream tells the same reply as the JSON answer next to it."""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx2

# Text with a multi-byte character and a line end, so byte splits land inside both.
TEXT = "Héllo wörld,\nsee 🌍"
ARGS_1 = '{"city": "Paris", "unit": "c"}'
ARGS_2 = '{"city": "Tokyo"}'

CHAT_ANSWER: dict[str, Any] = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-test",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": TEXT,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": ARGS_1},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "weather", "arguments": ARGS_2},
                    },
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 30,
        "completion_tokens": 12,
        "total_tokens": 42,
        "prompt_tokens_details": {"cached_tokens": 8},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}


def _chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    base = {"id": "chatcmpl-abc123", "object": "chat.completion.chunk", "created": 1_700_000_000}
    choices = (
        [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    )
    return {**base, "model": "gpt-test", "choices": choices, **extra}


def _call(index: int, arguments: str, **first: Any) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": arguments}
    if "name" in first:
        function = {"name": first.pop("name"), "arguments": arguments}
    return {"tool_calls": [{"index": index, **first, "function": function}]}


CHAT_CHUNKS: list[dict[str, Any]] = [
    _chunk({"role": "assistant", "content": "", "refusal": None}),
    _chunk({"content": "Héllo "}),
    _chunk({"content": "wörld,\nsee "}),
    _chunk({"content": "🌍"}),
    _chunk(_call(0, "", id="call_1", type="function", name="weather")),
    _chunk(_call(0, '{"city": ')),
    _chunk(_call(0, '"Paris", "unit": "c"}')),
    _chunk(_call(1, "", id="call_2", type="function", name="weather")),
    _chunk(_call(1, '{"city": "Tokyo"}')),
    _chunk({}, "tool_calls"),
    _chunk(None, usage=CHAT_ANSWER["usage"]),
]

ANTHROPIC_MESSAGE: dict[str, Any] = {
    "id": "msg_01XYZ",
    "type": "message",
    "role": "assistant",
    "model": "claude-test",
    "content": [
        {"type": "text", "text": TEXT},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": json.loads(ARGS_1)},
        {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": json.loads(ARGS_2)},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 22,
        "output_tokens": 12,
        "cache_read_input_tokens": 8,
        "cache_creation_input_tokens": 0,
    },
}

ANTHROPIC_EVENTS: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            **ANTHROPIC_MESSAGE,
            "content": [],
            "stop_reason": None,
            "usage": {**ANTHROPIC_MESSAGE["usage"], "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Héllo wörld,"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "\nsee 🌍"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}},
    },
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"city": "Pa'},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": 'ris", "unit": "c"}'},
    },
    {"type": "content_block_stop", "index": 1},
    {
        "type": "content_block_start",
        "index": 2,
        "content_block": {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {}},
    },
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": ARGS_2},
    },
    {"type": "content_block_stop", "index": 2},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 12},
    },
    {"type": "message_stop"},
]


def chat_sse(chunks: list[dict[str, Any]], *, done: bool = True, newline: str = "\n") -> bytes:
    events = [f"data: {json.dumps(chunk)}" for chunk in chunks] + (["data: [DONE]"] if done else [])
    return "".join(event + newline * 2 for event in events).encode()


def anthropic_sse(events: list[dict[str, Any]], *, newline: str = "\n") -> bytes:
    return "".join(
        f"event: {event['type']}{newline}data: {json.dumps(event)}{newline}{newline}" for event in events
    ).encode()


def parse_sse(raw: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) of each event Warden wrote: it always ends lines with \\n."""
    assert raw == b"" or raw.endswith(b"\n\n"), "a translator returned part of an event"
    events = []
    for block in raw.decode().split("\n\n")[:-1]:
        name, data = None, []
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            else:
                raise AssertionError(f"unexpected line {line!r}")
        events.append((name, "\n".join(data)))
    return events


def payloads(raw: bytes) -> list[dict[str, Any]]:
    """The JSON data of each event (skipping [DONE]), checking that a named event's name is its type."""
    out = []
    for name, data in parse_sse(raw):
        if data == "[DONE]":
            continue
        value = json.loads(data)
        if name is not None:
            assert value["type"] == name
        out.append(value)
    return out


def run(translator: Any, raw: bytes, cuts: list[int] | None = None) -> bytes:
    """Feed `raw` cut at `cuts` (every byte when None); each returned piece must be whole events."""
    bounds = [0, *(sorted(set(cuts)) if cuts is not None else range(1, len(raw))), len(raw)]
    out = b""
    for start, end in itertools.pairwise(bounds):
        piece = translator.feed(raw[start:end])
        parse_sse(piece)
        out += piece
    rest = translator.finish()
    parse_sse(rest)
    return out + rest


def mock_client_transport(body: bytes, content_type: str) -> httpx2.Client:
    """An httpx client whose every request gets `body`: the official SDKs read our bytes as the API's."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": content_type}, content=body)

    return httpx2.Client(transport=httpx2.MockTransport(answer))
