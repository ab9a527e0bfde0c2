"""Anthropic Messages clients on a Chat Completions upstream, checked with the anthropic SDK's types and
its own stream reader."""

from __future__ import annotations

import copy
import json
from typing import Any

import anthropic
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from proxy.translate import Untranslatable, translation
from tests.proxy.translate.samples import (
    ARGS_1,
    ARGS_2,
    CHAT_ANSWER,
    CHAT_CHUNKS,
    TEXT,
    chat_sse,
    mock_client_transport,
    payloads,
    run,
)

T = translation("messages", "chat.completions")
EVENTS = TypeAdapter(RawMessageStreamEvent)


def test_request_maps_a_tool_conversation() -> None:
    payload = {
        "model": "m",
        "max_tokens": 256,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C", "is_error": False},
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
        "tools": [{"name": "weather", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"],
        "temperature": 0.3,
        "top_p": 0.8,
        "top_k": 5,
        "metadata": {"user_id": "u-1"},
        "thinking": {"type": "disabled"},
        "stream": True,
    }
    assert T.request(payload) == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "user", "content": "Thanks"},
        ],
        "max_completion_tokens": 256,
        "temperature": 0.3,
        "top_p": 0.8,
        "stop": ["END"],
        "tools": [
            {
                "type": "function",
                "function": {"name": "weather", "description": "d", "parameters": {"type": "object"}},
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "user": "u-1",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0]"),
        ({"mcp_servers": [{"type": "url", "url": "https://x", "name": "x"}]}, "mcp_servers"),
        ({"container": "c"}, "container"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "document", "source": {"type": "text", "data": "x"}}],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [{"type": "image", "source": {"type": "url", "url": "https://x"}}],
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].content[0]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
    ],
)
def test_untranslatable_fields_are_named(extra: dict[str, Any], param: str) -> None:
    payload = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(Untranslatable) as refused:
        T.request(payload)
    assert refused.value.param == param


def test_answer_validates_and_carries_everything() -> None:
    message = Message.model_validate(T.answer(CHAT_ANSWER))
    assert message.id == "msg_abc123" and message.model == "gpt-test"
    assert message.stop_reason == "tool_use"
    assert [block.type for block in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[0].text == TEXT  # type: ignore[union-attr]
    assert [(b.id, b.input) for b in message.content if b.type == "tool_use"] == [
        ("call_1", json.loads(ARGS_1)),
        ("call_2", json.loads(ARGS_2)),
    ]
    # 30 prompt tokens of which 8 were cached: Anthropic counts those apart.
    assert (
        message.usage.input_tokens,
        message.usage.cache_read_input_tokens,
        message.usage.output_tokens,
    ) == (
        22,
        8,
        12,
    )


@pytest.mark.parametrize(
    ("finish", "stop"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal"), (None, "end_turn")],
)
def test_finish_reasons(finish: str | None, stop: str) -> None:
    body = copy.deepcopy(CHAT_ANSWER)
    body["choices"][0]["finish_reason"] = finish
    assert T.answer(body)["stop_reason"] == stop


@pytest.mark.parametrize("arguments", ["", "not json", "[1, 2]"])
def test_answer_arguments_that_are_not_an_object_become_empty(arguments: str) -> None:
    body = copy.deepcopy(CHAT_ANSWER)
    body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = arguments
    assert Message.model_validate(T.answer(body)).content[1].input == {}  # type: ignore[union-attr]


def _stream() -> bytes:
    return run(T.stream({"model": "gpt-test", "max_tokens": 5, "messages": []}), chat_sse(CHAT_CHUNKS), [])


def test_stream_events_validate() -> None:
    events = [e for e in payloads(_stream()) if e["type"] != "ping"]
    parsed = [EVENTS.validate_python(e) for e in events]
    assert [e.type for e in parsed] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_the_anthropic_sdk_assembles_the_json_answer() -> None:
    client = anthropic.Anthropic(
        api_key="k",
        base_url="http://warden.test",
        http_client=mock_client_transport(_stream(), "text/event-stream"),
    )
    with client.messages.stream(
        model="gpt-test", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    expected = Message.model_validate(T.answer(CHAT_ANSWER))
    assert text == TEXT
    assert [b.model_dump(exclude={"parsed_output"}) for b in final.content] == [
        b.model_dump() for b in expected.content
    ]
    assert final.stop_reason == expected.stop_reason
    assert final.usage.input_tokens == expected.usage.input_tokens
    assert final.usage.output_tokens == expected.usage.output_tokens


def test_the_anthropic_sdk_reads_the_answer() -> None:
    body = json.dumps(T.answer(CHAT_ANSWER)).encode()
    client = anthropic.Anthropic(
        api_key="k",
        base_url="http://warden.test",
        http_client=mock_client_transport(body, "application/json"),
    )
    message = client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text == TEXT  # type: ignore[union-attr]


def test_tool_calls_without_index_are_told_apart_by_id() -> None:
    """Some servers leave `index` out of tool-call fragments; the id still tells calls apart."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = [
        chunk({"tool_calls": [{"id": "a", "function": {"name": "f", "arguments": '{"x":'}}]}),
        chunk({"tool_calls": [{"function": {"arguments": "1}"}}]}),
        chunk({"tool_calls": [{"id": "b", "function": {"name": "g", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
    ]
    events = payloads(run(T.stream({"model": "m"}), chat_sse(chunks), []))
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [(b["id"], b["name"]) for b in starts] == [("a", "f"), ("b", "g")]
    fragments = [
        (e["index"], e["delta"]["partial_json"]) for e in events if e["type"] == "content_block_delta"
    ]
    assert fragments == [(0, '{"x":'), (0, "1}"), (1, "{}")]


def test_a_stream_cut_before_its_finish_still_closes() -> None:
    events = payloads(run(T.stream({"model": "m"}), chat_sse(CHAT_CHUNKS[:3], done=False), []))
    parsed = [EVENTS.validate_python(e) for e in events if e["type"] != "ping"]
    assert [e.type for e in parsed[-3:]] == ["content_block_stop", "message_delta", "message_stop"]
    assert parsed[-2].delta.stop_reason is None  # type: ignore[union-attr]


def test_an_empty_stream_still_forms_a_message() -> None:
    parsed = [
        EVENTS.validate_python(e)
        for e in payloads(run(T.stream({"model": "m"}), b"", []))
        if e["type"] != "ping"
    ]
    assert [e.type for e in parsed] == ["message_start", "message_delta", "message_stop"]


def test_an_upstream_error_mid_stream_becomes_an_error_event() -> None:
    raw = chat_sse(CHAT_CHUNKS[:2], done=False) + b'data: {"error": {"message": "overloaded"}}\n\n'
    events = payloads(run(T.stream({"model": "m"}), raw, []))
    assert events[-1] == {"type": "error", "error": {"type": "api_error", "message": "overloaded"}}


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (503, "api_error"),
        (529, "overloaded_error"),
    ],
)
def test_errors_take_anthropics_shape(status: int, kind: str) -> None:
    body = T.error(status, {"error": {"message": "upstream says no", "type": "whatever", "code": None}})
    assert anthropic.types.ErrorResponse.model_validate(body).error.type == kind
    assert body["error"]["message"] == "upstream says no"


@pytest.mark.parametrize("kind", [["auto"], {"type": "auto"}])
def test_a_tool_choice_whose_type_is_not_a_string_is_refused(kind: Any) -> None:
    """Found by the fuzzer: an unhashable `type` was looked up in a dict, a TypeError (a 500)."""
    request = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(Untranslatable) as refused:
        T.request({**request, "tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": kind}})
    assert refused.value.param == "tool_choice"
