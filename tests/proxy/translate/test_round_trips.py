"""There and back: a request, answer or stream translated to the other API and back is what it was.

Requests are drawn by hypothesis in the canonical form each direction writes (one system block list,
tool results right after their calls, compact tool arguments), so the round trip must be exact.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
from anthropic.types import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.translate.chat_messages import ChatToMessages
from proxy.translate.messages_chat import MessagesToChat
from tests.proxy.translate.samples import (
    ANTHROPIC_EVENTS,
    ANTHROPIC_MESSAGE,
    CHAT_ANSWER,
    anthropic_sse,
    mock_client_transport,
    run,
)

CHAT_TO_MESSAGES = ChatToMessages()
MESSAGES_TO_CHAT = MessagesToChat()

texts = st.text(min_size=1, max_size=20)
ids = st.from_regex(r"[A-Za-z0-9_]{1,12}", fullmatch=True)
names = st.from_regex(r"[a-z_]{1,10}", fullmatch=True)
json_objects = st.dictionaries(
    st.text(max_size=5), st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)), max_size=3
)
images = st.from_regex(r"[A-Za-z0-9+/]{4,12}", fullmatch=True).map(
    lambda data: f"data:image/png;base64,{data}"
)


def _compact(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@st.composite
def chat_requests(draw: st.DrawFn) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(texts)})
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        if draw(st.booleans()):
            user = [
                {"type": "text", "text": draw(texts)},
                {"type": "image_url", "image_url": {"url": draw(images)}},
            ]
            messages.append({"role": "user", "content": user})
        else:
            messages.append({"role": "user", "content": draw(texts)})
        call_ids = draw(st.lists(ids, max_size=3, unique=True))
        text = draw(st.none() | texts) if call_ids else draw(texts)
        assistant: dict[str, Any] = {"role": "assistant", "content": text}
        if call_ids:
            assistant["tool_calls"] = [
                {
                    "id": i,
                    "type": "function",
                    "function": {"name": draw(names), "arguments": _compact(draw(json_objects))},
                }
                for i in call_ids
            ]
        messages.append(assistant)
        messages += [{"role": "tool", "tool_call_id": i, "content": draw(texts)} for i in call_ids]
    request: dict[str, Any] = {
        "model": draw(names),
        "messages": messages,
        "max_completion_tokens": draw(st.integers(1, 9999)),
    }
    if draw(st.booleans()):
        request["tools"] = [
            {
                "type": "function",
                "function": {"name": name, "description": draw(texts), "parameters": {"type": "object"}},
            }
            for name in draw(st.lists(names, min_size=1, max_size=2, unique=True))
        ]
        request["tool_choice"] = draw(
            st.sampled_from(
                [
                    "auto",
                    "required",
                    "none",
                    {"type": "function", "function": {"name": request["tools"][0]["function"]["name"]}},
                ]
            )
        )
        if request["tool_choice"] != "none" and draw(st.booleans()):
            request["parallel_tool_calls"] = False
    for key, values in (
        ("temperature", st.floats(0, 1)),
        ("top_p", st.floats(0, 1)),
        ("stop", st.lists(texts, min_size=1, max_size=2)),
        ("user", texts),
    ):
        if draw(st.booleans()):
            request[key] = draw(values)
    if draw(st.booleans()):
        request |= {"stream": True, "stream_options": {"include_usage": True}}
    return request


@settings(max_examples=60, deadline=None)
@given(chat_requests())
def test_chat_request_through_messages_and_back(request: dict[str, Any]) -> None:
    assert MESSAGES_TO_CHAT.request(CHAT_TO_MESSAGES.request(request)) == request


@st.composite
def anthropic_requests(draw: st.DrawFn) -> dict[str, Any]:
    turns: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        user = results + [{"type": "text", "text": t} for t in draw(st.lists(texts, min_size=1, max_size=2))]
        turns.append({"role": "user", "content": user})
        call_ids = draw(st.lists(ids, max_size=2, unique=True))
        assistant = [
            {"type": "text", "text": t}
            for t in draw(st.lists(texts, min_size=0 if call_ids else 1, max_size=2))
        ]
        assistant += [
            {"type": "tool_use", "id": i, "name": draw(names), "input": draw(json_objects)} for i in call_ids
        ]
        turns.append({"role": "assistant", "content": assistant})
        results = [{"type": "tool_result", "tool_use_id": i, "content": draw(texts)} for i in call_ids]
    request: dict[str, Any] = {
        "model": draw(names),
        "max_tokens": draw(st.integers(1, 9999)),
        "messages": turns,
    }
    if draw(st.booleans()):
        request["system"] = [{"type": "text", "text": draw(texts)}]
    if draw(st.booleans()):
        request["tools"] = [
            {"name": draw(names), "description": draw(texts), "input_schema": {"type": "object"}}
        ]
        choice = draw(
            st.sampled_from(
                [{"type": "auto"}, {"type": "any"}, {"type": "tool", "name": request["tools"][0]["name"]}]
            )
        )
        if draw(st.booleans()):
            choice["disable_parallel_tool_use"] = True
        request["tool_choice"] = choice
    for key, values in (
        ("temperature", st.floats(0, 1)),
        ("stop_sequences", st.lists(texts, min_size=1, max_size=2)),
        ("stream", st.just(True)),
    ):
        if draw(st.booleans()):
            request[key] = draw(values)
    if draw(st.booleans()):
        request["metadata"] = {"user_id": draw(texts)}
    return request


@settings(max_examples=60, deadline=None)
@given(anthropic_requests())
def test_anthropic_request_through_chat_and_back(request: dict[str, Any]) -> None:
    assert CHAT_TO_MESSAGES.request(MESSAGES_TO_CHAT.request(request)) == request


def test_anthropic_answer_through_chat_and_back() -> None:
    assert MESSAGES_TO_CHAT.answer(CHAT_TO_MESSAGES.answer(ANTHROPIC_MESSAGE)) == ANTHROPIC_MESSAGE


def test_chat_answer_through_anthropic_and_back() -> None:
    back = CHAT_TO_MESSAGES.answer(MESSAGES_TO_CHAT.answer(CHAT_ANSWER))
    assert back["id"] == CHAT_ANSWER["id"] and back["usage"] == CHAT_ANSWER["usage"]
    message, original = back["choices"][0]["message"], CHAT_ANSWER["choices"][0]["message"]
    assert message["content"] == original["content"]
    assert [json.loads(c["function"]["arguments"]) for c in message["tool_calls"]] == [
        json.loads(c["function"]["arguments"]) for c in original["tool_calls"]
    ]
    assert back["choices"][0]["finish_reason"] == "tool_calls"


def test_anthropic_stream_through_chat_and_back() -> None:
    request = {"model": "claude-test", "max_tokens": 5, "messages": [], "stream": True}
    chat = run(
        CHAT_TO_MESSAGES.stream(MESSAGES_TO_CHAT.request(request)), anthropic_sse(ANTHROPIC_EVENTS), []
    )
    back = run(MESSAGES_TO_CHAT.stream(request), chat, [])
    client = anthropic.Anthropic(
        api_key="k",
        base_url="http://warden.test",
        http_client=mock_client_transport(back, "text/event-stream"),
    )
    with client.messages.stream(
        model="claude-test", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = stream.get_final_message()
    original = Message.model_validate(ANTHROPIC_MESSAGE)
    assert [b.model_dump(exclude={"parsed_output"}) for b in final.content] == [
        b.model_dump() for b in original.content
    ]
    assert (final.id, final.model, final.stop_reason) == (original.id, original.model, original.stop_reason)
    assert final.usage.model_dump(exclude_none=True) == original.usage.model_dump(exclude_none=True)
