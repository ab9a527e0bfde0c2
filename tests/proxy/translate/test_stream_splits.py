"""Every stream translator gives the same client events however the upstream's bytes are cut and
whichever line ends it uses: cut at every byte, and at random places (hypothesis)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.translate import translation
from tests.proxy.translate.samples import ANTHROPIC_EVENTS, CHAT_CHUNKS, anthropic_sse, chat_sse, run

CASES: dict[str, tuple[tuple[str, str], dict[str, Any], Callable[[str], bytes]]] = {
    "responses<-chat": (
        ("responses", "chat.completions"),
        {"model": "m", "input": "hi", "stream": True},
        lambda newline: chat_sse(CHAT_CHUNKS, newline=newline),
    ),
    "messages<-chat": (
        ("messages", "chat.completions"),
        {"model": "m", "max_tokens": 5, "messages": [], "stream": True},
        lambda newline: chat_sse(CHAT_CHUNKS, newline=newline),
    ),
    "chat<-messages": (
        ("chat.completions", "messages"),
        {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}},
        lambda newline: anthropic_sse(ANTHROPIC_EVENTS, newline=newline),
    ),
    "responses<-messages": (
        ("responses", "messages"),
        {"model": "m", "input": "hi", "stream": True},
        lambda newline: anthropic_sse(ANTHROPIC_EVENTS, newline=newline),
    ),
}
# Chat chunks translated from Anthropic carry the time they were made.
_CLOCK = re.compile(rb'"(created|created_at)":\d+')


def translate(case: str, newline: str, cuts: list[int] | None) -> bytes:
    pair, request, upstream = CASES[case]
    found = translation(*pair)
    assert found is not None
    return _CLOCK.sub(rb'"\1":0', run(found.stream(request), upstream(newline), cuts))


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_byte_split_and_line_end_gives_the_same_events(case: str) -> None:
    whole = translate(case, "\n", [])
    assert whole.count(b"\n\n") > 10
    for newline in ("\n", "\r\n", "\r"):
        assert translate(case, newline, None) == whole


@settings(max_examples=120, deadline=None)
@given(
    st.sampled_from(sorted(CASES)),
    st.sampled_from(["\n", "\r\n"]),
    st.lists(st.integers(min_value=1, max_value=10_000), max_size=25),
)
def test_random_splits_give_the_same_events(case: str, newline: str, cuts: list[int]) -> None:
    raw_length = len(CASES[case][2](newline))
    assert translate(case, newline, [cut % raw_length or 1 for cut in cuts]) == translate(case, "\n", [])
