"""The lookup of translations, and responses clients on an Anthropic upstream (two translations chained)."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from proxy.translate import SUPPORTED, Untranslatable, compose, translation
from proxy.translate.chat_messages import ChatToMessages
from proxy.translate.messages_chat import MessagesToChat
from proxy.translate.responses_chat import ResponsesToChat
from tests.proxy.translate.samples import (
    ANTHROPIC_EVENTS,
    ANTHROPIC_MESSAGE,
    ARGS_1,
    TEXT,
    anthropic_sse,
    mock_client_transport,
    payloads,
    run,
)

T = translation("responses", "messages")


@pytest.mark.parametrize("api", ["chat.completions", "responses", "messages", "embeddings"])
def test_the_same_api_needs_no_translation(api: str) -> None:
    assert translation(api, api) is None


@pytest.mark.parametrize(
    ("client", "upstream"),
    [
        ("embeddings", "messages"),
        ("completions", "messages"),
        ("chat.completions", "responses"),
        ("messages", "responses"),
    ],
)
def test_pairs_without_a_translation_raise_key_error(client: str, upstream: str) -> None:
    with pytest.raises(KeyError):
        translation(client, upstream)


def test_every_supported_pair_has_its_names() -> None:
    assert {
        ("responses", "chat.completions"),
        ("messages", "chat.completions"),
        ("chat.completions", "messages"),
        ("responses", "messages"),
    } == SUPPORTED
    for client, upstream in SUPPORTED:
        found = translation(client, upstream)
        assert found is not None and (found.client, found.upstream) == (client, upstream)
    assert T is not None and T.upstream_path == "messages"


def test_compose_refuses_mismatched_links() -> None:
    with pytest.raises(ValueError, match="cannot chain"):
        compose(ResponsesToChat(), MessagesToChat())


def test_request_goes_through_both() -> None:
    assert T is not None
    out = T.request(
        {
            "model": "claude",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": "Weather?"},
                {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": ARGS_1},
                {"type": "function_call_output", "call_id": "c1", "output": "18C"},
            ],
            "max_output_tokens": 50,
            "stream": True,
        }
    )
    assert out == {
        "model": "claude",
        "max_tokens": 50,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "c1", "name": "weather", "input": json.loads(ARGS_1)}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "18C"}]},
        ],
        "stream": True,
    }


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {}}}}, "text.format"),
        ({"reasoning": {"effort": "high"}}, "reasoning.effort"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "ftp://h/x"}]}]},
            "input",
        ),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "nope"}]}, "input"),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
    ],
)
def test_refusals_name_the_clients_field(extra: dict[str, Any], param: str) -> None:
    assert T is not None
    with pytest.raises(Untranslatable) as refused:
        T.request({"model": "c", "input": "hi", **extra})
    assert refused.value.param == param


def test_answer_goes_through_both() -> None:
    assert T is not None
    answer = Response.model_validate(T.answer(ANTHROPIC_MESSAGE))
    assert answer.id == "resp_01XYZ" and answer.output_text == TEXT
    assert answer.usage is not None and (
        answer.usage.input_tokens,
        answer.usage.input_tokens_details.cached_tokens,
    ) == (
        30,
        8,
    )
    assert [item.type for item in answer.output] == ["message", "function_call", "function_call"]


def _stream() -> bytes:
    assert T is not None
    return run(
        T.stream({"model": "claude-test", "input": "hi", "stream": True}), anthropic_sse(ANTHROPIC_EVENTS), []
    )


def test_stream_goes_through_both_and_reports_usage() -> None:
    events = [TypeAdapter(ResponseStreamEvent).validate_python(e) for e in payloads(_stream())]
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.usage is not None and final.response.usage.input_tokens == 30
    assert final.response.output_text == TEXT
    expected = T.answer(ANTHROPIC_MESSAGE)  # type: ignore[union-attr]
    assert [_without_ids(item) for item in payloads(_stream())[-1]["response"]["output"]] == [
        _without_ids(item) for item in expected["output"]
    ]


def _without_ids(item: dict[str, Any]) -> dict[str, Any]:
    """An output item less its id, and with its arguments parsed (the stream passes Anthropic's text)."""
    out = {key: value for key, value in item.items() if key != "id"}
    if "arguments" in out:
        out["arguments"] = json.loads(out["arguments"])
    return out


def test_the_openai_sdk_reads_the_chained_stream() -> None:
    client = openai.OpenAI(
        api_key="k",
        base_url="http://warden.test/v1",
        http_client=mock_client_transport(_stream(), "text/event-stream"),
    )
    with client.responses.stream(model="claude-test", input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == TEXT


def test_errors_come_back_in_openais_shape() -> None:
    assert T is not None
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    assert T.error(429, body) == {
        "error": {"message": "slow down", "type": "rate_limit_error", "param": None, "code": None}
    }


def test_compose_chains_the_pieces_in_order() -> None:
    """Requests outer-then-inner; answers inner-then-outer: a chat client through messages and back
    reaches a chat upstream unchanged in substance."""
    loop = compose(ChatToMessages(), MessagesToChat())
    assert (loop.client, loop.upstream, loop.upstream_path) == (
        "chat.completions",
        "chat.completions",
        "chat/completions",
    )
    request = {"model": "m", "max_tokens": 7, "messages": [{"role": "user", "content": "hi"}]}
    assert loop.request(request) == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 7,
    }
