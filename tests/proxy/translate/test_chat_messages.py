"""Chat Completions clients on an Anthropic Messages upstream, checked with the openai SDK's types and
its own stream reader."""

from __future__ import annotations

import copy
import json
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from proxy.translate import Untranslatable, translation
from proxy.translate.chat_messages import DEFAULT_MAX_TOKENS
from tests.proxy.translate.samples import (
    ANTHROPIC_EVENTS,
    ANTHROPIC_MESSAGE,
    ARGS_1,
    ARGS_2,
    TEXT,
    anthropic_sse,
    mock_client_transport,
    payloads,
    run,
)

T = translation("chat.completions", "messages")


def test_lookup() -> None:
    assert T is not None and T.upstream_path == "messages"


def test_request_maps_a_tool_conversation() -> None:
    payload = {
        "model": "claude",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}},
                ],
            },
            {"role": "developer", "content": [{"type": "text", "text": "Metric units."}]},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": ARGS_1},
                    },
                    {
                        "id": "functions.weather:1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {
                "role": "tool",
                "tool_call_id": "functions.weather:1",
                "content": [{"type": "text", "text": "25C"}],
            },
            {"role": "user", "content": "Thanks", "name": "ann"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "weather", "parameters": {"type": "object"}, "strict": True},
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "parallel_tool_calls": False,
        "max_completion_tokens": 300,
        "temperature": 0.7,
        "stop": "END",
        "user": "u-1",
        "stream": True,
        "stream_options": {"include_usage": True},
        "n": 1,
        "seed": 3,
        "logprobs": False,
    }
    assert T.request(payload) == {
        "model": "claude",
        "max_tokens": 300,
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Metric units."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "call_1", "name": "weather", "input": json.loads(ARGS_1)},
                    # Anthropic accepts [a-zA-Z0-9_-] ids only; the result below gets the same id.
                    {"type": "tool_use", "id": "functions_weather_1", "name": "weather", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "functions_weather_1",
                        "content": [{"type": "text", "text": "25C"}],
                    },
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
        "temperature": 0.7,
        "stream": True,
        "stop_sequences": ["END"],
        "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "u-1"},
    }


def test_max_tokens_defaults_when_the_request_has_none() -> None:
    out = T.request({"model": "c", "messages": [{"role": "user", "content": "hi"}]})
    assert out == {
        "model": "c",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    assert T.request({"model": "c", "max_tokens": 9, "messages": []})["max_tokens"] == 9


def test_http_images_become_url_sources() -> None:
    part = {"type": "image_url", "image_url": {"url": "https://x.test/cat.png", "detail": "high"}}
    out = T.request({"model": "c", "messages": [{"role": "user", "content": [part]}]})
    assert out["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.png"}}
    ]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
            "response_format",
        ),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]"),
        (
            {"tool_choice": "banana", "tools": [{"type": "function", "function": {"name": "f"}}]},
            "tool_choice",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "ftp://secret-host/a.png"}}],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
                        ],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0]"),
    ],
)
def test_untranslatable_fields_are_named(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(Untranslatable) as refused:
        T.request({"model": "c", "messages": [{"role": "user", "content": "hi"}], **extra})
    assert refused.value.param == param
    assert "secret" not in refused.value.message  # request values never reach error texts


def test_answer_validates_and_carries_everything() -> None:
    answer = ChatCompletion.model_validate(T.answer(ANTHROPIC_MESSAGE))
    assert answer.id == "chatcmpl-01XYZ" and answer.model == "claude-test"
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == TEXT
    assert [
        (c.id, c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls or []
    ] == [
        ("toolu_1", "weather", json.loads(ARGS_1)),
        ("toolu_2", "weather", json.loads(ARGS_2)),
    ]
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (
        30,
        12,
        42,
    )
    assert (
        answer.usage.prompt_tokens_details is not None
        and answer.usage.prompt_tokens_details.cached_tokens == 8
    )


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
    ],
)
def test_stop_reasons(stop: str, finish: str) -> None:
    assert T.answer({**ANTHROPIC_MESSAGE, "stop_reason": stop})["choices"][0]["finish_reason"] == finish


def test_an_answer_with_only_tool_calls_has_null_content() -> None:
    body = copy.deepcopy(ANTHROPIC_MESSAGE)
    body["content"] = body["content"][1:]
    assert T.answer(body)["choices"][0]["message"]["content"] is None


def _stream(include_usage: bool = True) -> bytes:
    request = {"model": "claude-test", "messages": [], "stream": True}
    if include_usage:
        request["stream_options"] = {"include_usage": True}
    return run(T.stream(request), anthropic_sse(ANTHROPIC_EVENTS), [])


def test_stream_chunks_validate_and_end_with_usage_and_done() -> None:
    raw = _stream()
    assert raw.endswith(b"data: [DONE]\n\n")
    chunks = [ChatCompletionChunk.model_validate(c) for c in payloads(raw)]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.model_dump(exclude_none=True) == ChatCompletion.model_validate(
        T.answer(ANTHROPIC_MESSAGE)
    ).usage.model_dump(exclude_none=True)  # type: ignore[union-attr]


def test_no_usage_chunk_unless_asked() -> None:
    chunks = payloads(_stream(include_usage=False))
    assert all(chunk["choices"] for chunk in chunks) and not any("usage" in chunk for chunk in chunks)


def test_the_openai_sdk_assembles_the_json_answer() -> None:
    client = openai.OpenAI(
        api_key="k",
        base_url="http://warden.test/v1",
        http_client=mock_client_transport(_stream(), "text/event-stream"),
    )
    with client.chat.completions.stream(
        model="claude-test", messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = stream.get_final_completion()
    expected = ChatCompletion.model_validate(T.answer(ANTHROPIC_MESSAGE))
    message, wanted = final.choices[0].message, expected.choices[0].message
    assert message.content == wanted.content == TEXT
    # The stream passes Anthropic's JSON text through; the answer serialises `input` anew.
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []] == [
        (c.id, c.function.name, json.loads(c.function.arguments)) for c in wanted.tool_calls or []
    ]
    assert final.choices[0].finish_reason == "tool_calls"


def test_a_stream_cut_before_message_stop_still_ends_with_done() -> None:
    raw = run(T.stream({"model": "c"}), anthropic_sse(ANTHROPIC_EVENTS[:5]), [])
    assert raw.endswith(b"data: [DONE]\n\n")
    chunks = payloads(raw)
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)


def test_an_upstream_error_event_becomes_an_openai_error_chunk() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    raw = run(T.stream({"model": "c"}), anthropic_sse([*ANTHROPIC_EVENTS[:4], error]), [])
    last = payloads(raw)[-1]
    assert last == {"error": {"message": "Overloaded", "type": "server_error", "param": None, "code": None}}
    assert not raw.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too big"}},
            ("invalid_request_error", "max_tokens: too big"),
        ),
        (
            429,
            {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
            ("rate_limit_error", "slow"),
        ),
        (
            529,
            {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
            ("server_error", "busy"),
        ),
        (502, "<html>bad gateway</html>", ("server_error", "The upstream answered HTTP 502.")),
        (401, None, ("authentication_error", "The upstream answered HTTP 401.")),
    ],
)
def test_errors_take_openais_shape(status: int, body: Any, expected: tuple[str, str]) -> None:
    error = T.error(status, body)["error"]
    assert (error["type"], error["message"]) == expected
    assert set(error) == {"message", "type", "param", "code"}
