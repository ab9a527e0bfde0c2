"""Responses clients on a Chat Completions upstream: requests, answers and streams, checked with the
openai SDK's own types and stream reader."""

from __future__ import annotations

import copy
import json
from typing import Any

import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
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

T = translation("responses", "chat.completions")
EVENTS = TypeAdapter(ResponseStreamEvent)


def test_lookup() -> None:
    assert T is not None
    assert (T.client, T.upstream, T.upstream_path) == ("responses", "chat.completions", "chat/completions")


def test_request_maps_a_tool_conversation() -> None:
    payload = {
        "model": "m",
        "instructions": "Be brief.",
        "input": [
            {"role": "developer", "content": "Use metric units."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
            },
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": ARGS_1},
            {"type": "function_call", "call_id": "c2", "name": "weather", "arguments": ARGS_2},
            {"type": "function_call_output", "call_id": "c1", "output": "18C"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "25C"}],
            },
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "And this?"},
                    {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "low"},
                ],
            },
        ],
        "tools": [
            {
                "type": "function",
                "name": "weather",
                "description": "d",
                "parameters": {"type": "object"},
                "strict": True,
            }
        ],
        "tool_choice": {"type": "function", "name": "weather"},
        "parallel_tool_calls": False,
        "max_output_tokens": 100,
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "u-1",
        "store": True,
        "metadata": {"k": "v"},
        "text": {
            "format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}
        },
        "reasoning": {"effort": "low", "summary": "auto"},
        "stream": True,
        "include": [],
    }
    chat = T.request(payload)
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": ARGS_1}},
        {"id": "c2", "type": "function", "function": {"name": "weather", "arguments": ARGS_2}},
    ]
    assert chat == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Use metric units."},
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": calls},
            {"role": "tool", "tool_call_id": "c1", "content": "18C"},
            {"role": "tool", "tool_call_id": "c2", "content": "25C"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "And this?"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}},
                ],
            },
        ],
        "max_completion_tokens": 100,
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "u-1",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "description": "d",
                    "parameters": {"type": "object"},
                    "strict": True,
                },
            }
        ],
        "parallel_tool_calls": False,
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True},
        },
        "reasoning_effort": "low",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_a_function_call_without_an_assistant_message_gets_its_own() -> None:
    chat = T.request(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "hi"},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            ],
        }
    )
    assert chat["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
    }


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"background": True}, "background"),
        ({"tools": [{"type": "web_search"}]}, "tools[0]"),
        (
            {"tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "file_search"}},
            "tool_choice",
        ),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0]",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0]",
        ),
        ({"truncation": "auto"}, "truncation"),
        ({"max_tool_calls": 3}, "max_tool_calls"),
        ({"text": {"format": {"type": "grammar"}}}, "text.format"),
    ],
)
def test_untranslatable_fields_are_named(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(Untranslatable) as refused:
        T.request({"model": "m", "input": "hi", **extra})
    assert refused.value.param == param


@pytest.mark.parametrize("role", [["user"], {"role": "user"}])
def test_an_item_whose_role_is_not_a_string_is_refused(role: Any) -> None:
    """Found by the fuzzer: an unhashable role was looked up in a dict, a TypeError (a 500)."""
    with pytest.raises(Untranslatable) as refused:
        T.request({"model": "m", "input": [{"type": "message", "role": role, "content": "hi"}]})
    assert refused.value.param == "input[0]"


def test_previous_response_id_says_why() -> None:
    with pytest.raises(Untranslatable) as refused:
        T.request({"model": "m", "input": "hi", "previous_response_id": "resp_secret"})
    assert refused.value.message == (
        "previous_response_id needs an upstream that keeps responses; "
        "this model is served through chat completions."
    )


def test_null_and_default_fields_are_not_refused() -> None:
    chat = T.request(
        {
            "model": "m",
            "input": "hi",
            "previous_response_id": None,
            "background": False,
            "truncation": "disabled",
        }
    )
    assert chat == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_answer_validates_and_carries_everything() -> None:
    answer = Response.model_validate(T.answer(CHAT_ANSWER))
    assert answer.id == "resp_abc123"
    assert answer.status == "completed" and answer.incomplete_details is None
    assert answer.output_text == TEXT
    calls = [item for item in answer.output if item.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [
        ("call_1", "weather", ARGS_1),
        ("call_2", "weather", ARGS_2),
    ]
    assert answer.usage is not None
    assert (answer.usage.input_tokens, answer.usage.output_tokens, answer.usage.total_tokens) == (30, 12, 42)
    assert answer.usage.input_tokens_details.cached_tokens == 8
    assert len({item.id for item in answer.output}) == 3


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_a_cut_answer_is_incomplete(finish: str, reason: str) -> None:
    body = copy.deepcopy(CHAT_ANSWER)
    body["choices"][0]["finish_reason"] = finish
    answer = Response.model_validate(T.answer(body))
    assert answer.status == "incomplete"
    assert answer.incomplete_details is not None and answer.incomplete_details.reason == reason
    assert [item.status for item in answer.output] == ["completed", "completed", "incomplete"]


def test_refusal_becomes_a_refusal_part() -> None:
    body = copy.deepcopy(CHAT_ANSWER)
    body["choices"][0]["message"] = {"role": "assistant", "content": None, "refusal": "I can't."}
    answer = Response.model_validate(T.answer(body))
    message = answer.output[0]
    assert message.type == "message" and message.content[0].type == "refusal"


def _stream(request: dict[str, Any] | None = None) -> bytes:
    return run(
        T.stream(request or {"model": "gpt-test", "input": "hi", "stream": True}), chat_sse(CHAT_CHUNKS), []
    )


def test_stream_events_validate_and_are_numbered() -> None:
    events = payloads(_stream())
    parsed = [EVENTS.validate_python(event) for event in events]
    assert [event.sequence_number for event in parsed] == list(range(len(parsed)))
    assert parsed[0].type == "response.created" and parsed[1].type == "response.in_progress"
    assert parsed[-1].type == "response.completed"
    deltas = [e.delta for e in parsed if e.type == "response.output_text.delta"]
    assert "".join(deltas) == TEXT
    arguments = [e.arguments for e in parsed if e.type == "response.function_call_arguments.done"]
    assert arguments == [ARGS_1, ARGS_2]


def test_stream_ends_with_the_json_answer() -> None:
    final = payloads(_stream())[-1]["response"]
    assert final["output"] == T.answer(CHAT_ANSWER)["output"]
    assert final["usage"] == T.answer(CHAT_ANSWER)["usage"]


def test_stream_echoes_the_request() -> None:
    request = {
        "model": "gpt-test",
        "input": "hi",
        "instructions": "Be brief.",
        "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
        "temperature": 0.5,
    }
    final = Response.model_validate(payloads(_stream(request))[-1]["response"])
    assert final.instructions == "Be brief." and final.temperature == 0.5
    assert [tool.name for tool in final.tools if tool.type == "function"] == ["weather"]


def test_the_openai_sdk_reads_the_stream() -> None:
    client = openai.OpenAI(
        api_key="k",
        base_url="http://warden.test/v1",
        http_client=mock_client_transport(_stream(), "text/event-stream"),
    )
    with client.responses.stream(model="gpt-test", input="hi") as stream:
        texts = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(texts) == TEXT == final.output_text
    assert [json.loads(item.arguments) for item in final.output if item.type == "function_call"] == [
        json.loads(ARGS_1),
        json.loads(ARGS_2),
    ]


def test_the_openai_sdk_reads_the_answer() -> None:
    body = json.dumps(T.answer(CHAT_ANSWER)).encode()
    client = openai.OpenAI(
        api_key="k",
        base_url="http://warden.test/v1",
        http_client=mock_client_transport(body, "application/json"),
    )
    assert client.responses.create(model="gpt-test", input="hi").output_text == TEXT


def test_a_stream_cut_before_its_finish_closes_as_incomplete() -> None:
    events = payloads(run(T.stream({"model": "m", "input": "hi"}), chat_sse(CHAT_CHUNKS[:3], done=False), []))
    parsed = [EVENTS.validate_python(event) for event in events]
    assert [e.type for e in parsed[-4:]] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    done = [e for e in parsed if e.type == "response.output_item.done"]
    assert len(done) == 1 and done[0].item.status == "incomplete"


def test_refusal_deltas_stream_as_a_refusal_part() -> None:
    chunks = [
        {
            "id": "chatcmpl-r",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"refusal": "No"}}],
        },
        {
            "id": "chatcmpl-r",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"refusal": "pe."}}],
        },
        {
            "id": "chatcmpl-r",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        },
    ]
    parsed = [
        EVENTS.validate_python(e) for e in payloads(run(T.stream({"model": "m"}), chat_sse(chunks), []))
    ]
    assert [e.refusal for e in parsed if e.type == "response.refusal.done"] == ["Nope."]
    final = parsed[-1]
    assert final.type == "response.completed"
    assert final.response.output[0].content[0].type == "refusal"


def test_an_upstream_error_mid_stream_becomes_an_error_event() -> None:
    raw = (
        chat_sse(CHAT_CHUNKS[:2], done=False)
        + b'data: {"error": {"message": "overloaded", "code": "busy"}}\n\n'
    )
    parsed = [EVENTS.validate_python(e) for e in payloads(run(T.stream({"model": "m"}), raw, []))]
    assert parsed[-1].type == "error" and parsed[-1].message == "overloaded" and parsed[-1].code == "busy"


def test_error_keeps_openai_shape() -> None:
    body = {
        "error": {"message": "bad model", "type": "invalid_request_error", "param": "model", "code": None}
    }
    assert T.error(404, body) == body
