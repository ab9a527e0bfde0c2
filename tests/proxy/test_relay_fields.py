"""The guarded relay on every channel of every stream format: for any split of tool-call arguments into
fragments, what the client receives equals the JSON answer's restored arguments and is valid JSON; a
placeholder split over deltas comes back whole; logprobs never outlive a changed text."""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.document import parse_policy
from policies.engine import CompiledPolicy, Report
from policies.findings import Placeholders
from policies.runtime import ModelPaths, Runtime
from policies.scanners import checkers
from proxy.formats import FORMATS
from proxy.gateway import governance
from proxy.gateway.exchange import AppliedPolicy
from proxy.gateway.relay import GuardedSseRelay

POLICY = """apiVersion: warden/v1
metadata: {name: fields, version: '1'}
rules:
  input:
    - {id: pii-in, scanner: pii, action: mask, params: {entities: [EMAIL_ADDRESS]}}
  output:
    - {id: cards, scanner: pii, action: mask, params: {entities: [CREDIT_CARD]}}
"""
# A value whose restoration needs JSON escaping: a quote and a backslash inside the address's name.
VALUE = 'ann "the boss" \\ o@example.org'
ARGUMENTS = json.dumps({"to": "<EMAIL_1>", "note": "cc <EMAIL_1> and card 4111 1111 1111 1111"})


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    # Pattern recognizers only: the rules here need no model.
    return CompiledPolicy(parse_policy(POLICY, "fields.yaml", checkers()), Runtime(ModelPaths()))


def applied(policy: CompiledPolicy) -> AppliedPolicy:
    placeholders = Placeholders()
    assert placeholders.token("EMAIL", VALUE) == "<EMAIL_1>"
    return AppliedPolicy(policy, Report("fields@1"), placeholders)


def json_answer(policy: CompiledPolicy) -> str:
    body = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": ARGUMENTS}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ]
    }
    governance.check_answer(applied(policy), FORMATS["chat.completions"], body)
    arguments: str = body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]  # type: ignore[index]
    return arguments


def sse(events: list[dict[str, Any]], *, typed: bool) -> bytes:
    out = b""
    for event in events:
        head = f"event: {event['type']}\n".encode() if typed else b""
        out += head + b"data: " + json.dumps(event).encode() + b"\n\n"
    return out + (b"" if typed else b"data: [DONE]\n\n")


def chat_stream(fragments: list[str]) -> bytes:
    events = [{"id": "x", "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}]
    for position, fragment in enumerate(fragments):
        call: dict[str, Any] = {"index": 0, "function": {"arguments": fragment}}
        if position == 0:
            call.update(id="c", type="function", function={"name": "f", "arguments": fragment})
        events.append(
            {"id": "x", "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]}
        )
    events.append({"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    return sse(events, typed=False)


def messages_stream(fragments: list[str]) -> bytes:
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {"id": "m", "type": "message", "role": "assistant", "content": []},
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}},
        },
    ]
    events += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": f}}
        for f in fragments
    ]
    events += [
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}},
        {"type": "message_stop"},
    ]
    return sse(events, typed=True)


def responses_stream(fragments: list[str]) -> bytes:
    item = {"type": "function_call", "id": "fc", "call_id": "c", "name": "f", "arguments": ""}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"id": "r", "status": "in_progress", "output": []}},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
    ]
    events += [
        {"type": "response.function_call_arguments.delta", "output_index": 0, "item_id": "fc", "delta": f}
        for f in fragments
    ]
    done_item = {**item, "arguments": "".join(fragments), "status": "completed"}
    events += [
        {
            "type": "response.function_call_arguments.done",
            "output_index": 0,
            "item_id": "fc",
            "arguments": done_item["arguments"],
        },
        {"type": "response.output_item.done", "output_index": 0, "item": done_item},
        {"type": "response.completed", "response": {"id": "r", "status": "completed", "output": [done_item]}},
    ]
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return sse(events, typed=True)


def relay_all(policy: CompiledPolicy, route: str, stream: bytes, cuts: list[int]) -> list[dict[str, Any]]:
    relay = GuardedSseRelay(FORMATS[route], applied(policy), drop_usage_chunk=False)
    out = b""
    previous = 0
    for cut in [*sorted(cuts), len(stream)]:
        out += relay.feed(stream[previous:cut])
        previous = cut
    out += relay.finish()
    events = []
    for block in out.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    return events


def received(route: str, events: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """The arguments as the client assembles them from deltas, and every whole copy the events repeat."""
    if route == "chat.completions":
        parts = [
            call["function"].get("arguments", "")
            for e in events
            for choice in e["choices"]
            for call in choice["delta"].get("tool_calls") or ()
        ]
        return "".join(parts), []
    if route == "messages":
        parts = [e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"]
        return "".join(parts), []
    parts = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    copies = [e["arguments"] for e in events if e["type"] == "response.function_call_arguments.done"]
    copies += [e["item"]["arguments"] for e in events if e["type"] == "response.output_item.done"]
    copies += [e["response"]["output"][0]["arguments"] for e in events if e["type"] == "response.completed"]
    numbers = [e["sequence_number"] for e in events]
    assert numbers == list(range(len(numbers))), "sequence numbers stay consecutive"
    return "".join(parts), copies


BUILDERS = {"chat.completions": chat_stream, "messages": messages_stream, "responses": responses_stream}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from(sorted(BUILDERS)),
    splits=st.lists(st.integers(min_value=1, max_value=len(ARGUMENTS) - 1), max_size=12, unique=True),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=6),
)
def test_any_split_of_arguments_gives_the_json_answer(
    policy: CompiledPolicy, route: str, splits: list[int], cuts: list[int]
) -> None:
    bounds = [0, *sorted(splits), len(ARGUMENTS)]
    fragments = [ARGUMENTS[a:b] for a, b in pairwise(bounds)]
    stream = BUILDERS[route](fragments)
    events = relay_all(policy, route, stream, [c for c in cuts if c < len(stream)])
    arguments, copies = received(route, events)
    expected = json_answer(policy)
    assert arguments == expected
    assert json.loads(arguments) == {"to": VALUE, "note": f"cc {VALUE} and card <CREDIT_CARD_1>"}
    assert all(copy == expected for copy in copies)


def test_streamed_logprobs_never_carry_a_changed_text(policy: CompiledPolicy) -> None:
    def event(text: str) -> dict[str, Any]:
        logprobs = {"content": [{"token": text, "logprob": -0.1, "bytes": None, "top_logprobs": []}]}
        return {
            "id": "x",
            "choices": [
                {"index": 0, "delta": {"content": text}, "logprobs": logprobs, "finish_reason": None}
            ],
        }

    words = [
        "hello ",
        "there ",
        "friend ",
        "this ",
        "is ",
        "fine ",
        "card ",
        "4111 ",
        "1111 ",
        "1111 ",
        "1111 ",
        "ok",
    ]
    words += [" padding"] * 40
    stream = sse([event(w) for w in words], typed=False)
    events = relay_all(policy, "chat.completions", stream, [])
    dumped = json.dumps(events)
    assert "4111" not in dumped and "<CREDIT_CARD_1>" in dumped
    # Logprobs survive only on an event whose text went out unchanged in that same event.
    for e in events:
        choice = e["choices"][0] if e["choices"] else {}
        if choice.get("logprobs"):
            assert choice["logprobs"]["content"][0]["token"] == choice["delta"]["content"]


def test_every_repeat_of_a_responses_text_is_what_was_released(policy: CompiledPolicy) -> None:
    """Text deltas, reasoning summary deltas, and the `.done`, `output_item.done` and `response.completed`
    copies of both: none of them may carry the card the output rule masks."""
    text, summary = "pay with 4111 1111 1111 1111 today", "user card 4111 1111 1111 1111 seen"
    message = {
        "type": "message",
        "id": "m",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text}],
    }
    reasoning = {"type": "reasoning", "id": "rs", "summary": [{"type": "summary_text", "text": summary}]}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"id": "r", "status": "in_progress", "output": []}},
        *(
            {
                "type": "response.reasoning_summary_text.delta",
                "output_index": 0,
                "summary_index": 0,
                "delta": w,
            }
            for w in summary.split(" ")
            for w in [w + " "]
        ),
        {
            "type": "response.reasoning_summary_text.done",
            "output_index": 0,
            "summary_index": 0,
            "text": summary,
        },
        {"type": "response.output_item.done", "output_index": 0, "item": reasoning},
        *(
            {"type": "response.output_text.delta", "output_index": 1, "content_index": 0, "delta": w + " "}
            for w in text.split(" ")
        ),
        {"type": "response.output_text.done", "output_index": 1, "content_index": 0, "text": text},
        {"type": "response.output_item.done", "output_index": 1, "item": message},
        {
            "type": "response.completed",
            "response": {"id": "r", "status": "completed", "output": [reasoning, message]},
        },
    ]
    for number, event in enumerate(events):
        event["sequence_number"] = number
    out = relay_all(policy, "responses", sse(events, typed=True), [])
    dumped = json.dumps(out)
    assert "4111" not in dumped and dumped.count("<CREDIT_CARD_1>") >= 6
    final = out[-1]["response"]["output"]
    assert final[1]["content"][0]["text"].strip() == "pay with <CREDIT_CARD_1> today"
