"""The SSE reader: line ends of every kind, split anywhere, comments and multi-line data."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.translate.sse import Event, SseReader, data_event, named_event

STREAM = (
    ": keep-alive comment\n"
    "event: first\n"
    'data: {"a": "é🌍"}\n'
    "\n"
    "id: 7\n"
    "retry: 100\n"
    "data: line one\n"
    "data:line two\n"
    "\n"
    "data: [DONE]\n"
    "\n"
)
EXPECTED = [Event("first", '{"a": "é🌍"}'), Event(None, "line one\nline two"), Event(None, "[DONE]")]


def read(raw: bytes, cuts: list[int]) -> list[Event]:
    reader = SseReader()
    bounds = [0, *sorted(set(cuts)), len(raw)]
    events = [e for start, end in itertools.pairwise(bounds) for e in reader.feed(raw[start:end])]
    return events + reader.finish()


def test_every_line_end_style_reads_the_same() -> None:
    for newline in ("\n", "\r\n", "\r"):
        raw = STREAM.replace("\n", newline).encode()
        assert read(raw, []) == EXPECTED
        assert read(raw, list(range(1, len(raw)))) == EXPECTED


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["\n", "\r\n", "\r"]), st.lists(st.integers(min_value=1, max_value=200), max_size=12))
def test_any_split_reads_the_same(newline: str, cuts: list[int]) -> None:
    raw = STREAM.replace("\n", newline).encode()
    assert read(raw, [cut % len(raw) or 1 for cut in cuts]) == EXPECTED


def test_a_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    reader = SseReader()
    assert reader.feed(b"data: x\r") == []
    assert reader.feed(b"\n\r") == []
    assert reader.feed(b"\n") == [Event(None, "x")]


def test_the_last_event_counts_without_its_blank_line() -> None:
    reader = SseReader()
    assert reader.feed(b"data: a\n\ndata: b") == [Event(None, "a")]
    assert reader.finish() == [Event(None, "b")]


def test_json_is_read_only_from_objects() -> None:
    assert Event(None, '{"a": 1}').json() == {"a": 1}
    assert Event(None, "[DONE]").json() is None
    assert Event(None, "[1]").json() is None
    assert Event(None, "[" * 100_000).json() is None


def test_writers() -> None:
    assert data_event({"a": "é\n"}) == 'data: {"a":"é\\n"}\n\n'.encode()
    assert data_event("[DONE]") == b"data: [DONE]\n\n"
    assert named_event({"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'
