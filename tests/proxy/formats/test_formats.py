"""The wire-format layer: every text of a request is found and written back where it was, answers and
stream events are read the same way for each format, and the route list has one owner."""

from __future__ import annotations

import json

import pytest

from policies.document import ROUTES
from proxy.formats import FORMATS
from proxy.formats.base import usage_of


def test_policies_scope_to_exactly_the_routes_warden_serves() -> None:
    # policies/ may not import proxy/: the policy language keeps its own list, held equal here.
    assert set(ROUTES) == set(FORMATS)


def test_chat_finds_every_message_text_and_writes_back_in_place() -> None:
    payload = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "part"}, {"type": "image_url"}]},
            {"role": "assistant", "content": None, "tool_calls": []},
        ],
    }
    slots = list(FORMATS["chat.completions"].request_texts(payload))
    assert [s.text for s in slots] == ["sys", "part"]
    for slot in slots:
        slot.write(slot.text.upper())
    assert payload["messages"][0]["content"] == "SYS"
    assert payload["messages"][1]["content"][0]["text"] == "PART"


@pytest.mark.parametrize(("route", "field"), [("completions", "prompt"), ("embeddings", "input")])
def test_string_or_list_fields_skip_token_arrays(route: str, field: str) -> None:
    payload = {"model": "m", field: ["a", [1, 2, 3], "b"]}
    slots = list(FORMATS[route].request_texts(payload))
    assert [s.text for s in slots] == ["a", "b"]
    slots[1].write("B")
    assert payload[field] == ["a", [1, 2, 3], "B"]
    assert FORMATS[route].prompt(payload) is payload[field]


def test_answers_and_stream_events_of_chat_and_completions() -> None:
    chat, completions = FORMATS["chat.completions"], FORMATS["completions"]
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}, {"index": 1}]}
    found = list(chat.answer_texts(body))
    assert found[0][1] is not None and found[0][1].text == "hi" and found[1][1] is None
    event = {"id": "x", "model": "m", "choices": [{"index": 0, "delta": {"content": "he"}}]}
    (piece,) = chat.stream_pieces(event)
    assert piece is not None and (piece.index, piece.text, piece.finish_reason) == (0, "he", None)
    piece.write("HE")
    assert event["choices"][0]["delta"]["content"] == "HE"
    built = completions.stream_chunk(completions.stream_template(event), 2, "t", "stop")
    assert built == {"id": "x", "model": "m", "choices": [{"index": 2, "text": "t", "finish_reason": "stop"}]}
    assert chat.first_text([{"index": 0, "content": "guarded"}]) == "guarded"
    assert completions.first_text([{"index": 0, "text": "plain"}]) == "plain"


def test_usage_is_read_from_any_answer_or_event() -> None:
    usage = usage_of(
        {"usage": {"prompt_tokens": 3, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 1}}}
    )
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (
        3,
        4,
        1,
    )
    assert usage_of({"choices": []}) is None


@pytest.mark.parametrize(
    ("route", "payload"),
    [
        (
            "chat.completions",
            {
                "messages": [
                    {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "ARGS"}}]}
                ]
            },
        ),
        ("responses", {"input": [{"type": "function_call", "name": "f", "arguments": "ARGS"}]}),
    ],
)
def test_tool_call_arguments_nested_too_deep_are_one_text_not_a_crash(route: str, payload: dict) -> None:
    """Found by the fuzzer: `[` x 5000 as arguments raised RecursionError in the parser (a 500)."""
    for arguments in ("[" * 5000, '{"a": ' * 300 + '"x"' + "}" * 300):
        request = json.loads(json.dumps(payload).replace("ARGS", arguments.replace('"', '\\"')))
        assert [s.text for s in FORMATS[route].request_texts(request)] == [arguments]


@pytest.mark.parametrize("route", ["chat.completions", "responses"])
def test_a_part_whose_type_is_not_a_string_carries_no_text(route: str) -> None:
    """Found by the fuzzer: an unhashable part `type` was looked up in a set, a TypeError (a 500)."""
    parts = [{"type": ["text"], "text": "a"}, {"type": {"t": 1}, "text": "b"}, {"type": "text", "text": "c"}]
    key = "messages" if route == "chat.completions" else "input"
    payload = {"model": "m", key: [{"role": "user", "content": parts}]}
    assert [s.text for s in FORMATS[route].request_texts(payload)] == ["c"]


def test_a_reasoning_summary_that_is_not_a_list_carries_no_text() -> None:
    """Found by the fuzzer: `"summary": Infinity` was iterated, a TypeError (a 500)."""
    payload = {
        "model": "m",
        "input": [{"type": "reasoning", "summary": 1e308}, {"type": "reasoning", "summary": {"a": "b"}}],
    }
    assert list(FORMATS["responses"].request_texts(payload)) == []


@pytest.mark.parametrize("route", sorted(FORMATS))
@pytest.mark.parametrize(
    "body",
    [{"choices": 5}, {"output": 5, "status": "completed"}, {"content": 5}, {"choices": [{"message": 5}]}],
)
def test_answers_of_the_wrong_shape_are_read_without_a_crash(route: str, body: dict) -> None:
    fmt = FORMATS[route]
    fmt.summary(body)
    assert [slot for _, slot in fmt.answer_texts(body) if slot is not None] == []
