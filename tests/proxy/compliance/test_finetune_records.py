"""Fine-tuning records from transcripts of every route: chat's messages, the Responses API's
instructions and input, and Anthropic's system and messages all become the same chat record."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.compliance.exports import _training_record

EXPECTED = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "hello"},
    ]
}


@pytest.mark.parametrize(
    ("route", "request_", "response"),
    [
        (
            "chat.completions",
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}],
            [{"index": 0, "content": "hello"}],
        ),
        (
            "responses",
            {
                "instructions": "Be brief.",
                "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi there"}]}],
            },
            [{"index": 0, "content": "hello"}],
        ),
        (
            "responses",
            {"instructions": "Be brief.", "input": "hi there"},
            {"output": [{"type": "message", "content": [{"type": "output_text", "text": "hello"}]}]},
        ),
        (
            "messages",
            {
                "system": [{"type": "text", "text": "Be brief."}],
                "messages": [{"role": "user", "content": "hi there"}],
            },
            {"content": [{"type": "text", "text": "hello"}]},
        ),
    ],
)
def test_every_route_gives_the_same_chat_record(route: str, request_: Any, response: Any) -> None:
    row = {"route": route, "request": request_, "response": response}
    assert _training_record(row, "chat") == EXPECTED


def test_unknown_shapes_are_skipped() -> None:
    assert (
        _training_record({"route": "responses", "request": 42, "response": [{"content": "x"}]}, "chat")
        is None
    )
    assert _training_record({"route": "embeddings", "request": "x", "response": []}, "chat") is None
