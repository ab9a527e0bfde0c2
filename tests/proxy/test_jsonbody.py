"""The one JSON parser for bodies from outside: depth bounded, every failure a `NotJson`."""

from __future__ import annotations

import pytest

from proxy.jsonbody import MAX_DEPTH, NotJson, parse_json
from tests.support import ROOT


def nested(depth: int) -> bytes:
    return (
        b'{"a": ' * (depth // 2)
        + b"[" * (depth - depth // 2)
        + b"]" * (depth - depth // 2)
        + b"}" * (depth // 2)
    )


def test_depth_up_to_the_bound_parses() -> None:
    assert parse_json(nested(MAX_DEPTH)) is not None
    wide = b"[" + b",".join([b'{"a": [1, {"b": []}]}'] * 10_000) + b"]"
    assert len(parse_json(wide)) == 10_000


@pytest.mark.parametrize(
    "raw", [nested(MAX_DEPTH + 1), b"[" * 100_000, b'{"a":' * 100_000, b"[" * 100_000 + b"]" * 100_000]
)
def test_deeper_bodies_are_refused(raw: bytes) -> None:
    with pytest.raises(NotJson, match="nested more than"):
        parse_json(raw)


@pytest.mark.parametrize("raw", [b"", b"{not json", b"\xff\xfe\x00", b'{"a": 1'])
def test_malformed_bodies_are_not_json(raw: bytes) -> None:
    with pytest.raises(NotJson):
        parse_json(raw)


def test_no_route_parses_a_body_another_way() -> None:
    """Flask's `get_json` and a bare `json.loads(request...)` would let RecursionError through again."""
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("proxy", "dashboards", "policies", "analytics")
        for path in (ROOT / package).rglob("*.py")
        if "get_json(" in path.read_text() or "json.loads(request" in path.read_text()
    ]
    assert offenders == []


def test_brackets_inside_strings_and_other_encodings_are_measured_right() -> None:
    text = '{"a": "' + "[" * 500 + '\\"' + "{" * 500 + '", "b": [[{}]]}'
    assert parse_json(text.encode())["b"] == [[{}]]
    with pytest.raises(NotJson, match="nested"):
        parse_json(nested(MAX_DEPTH + 1).decode().encode("utf-16"))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": "\\ud800"}',
        b'{"a": "x\\uDFFFy"}',
        b'{"\\udbff": 1}',
        b'["\\ude00\\ud83d"]',  # a pair in the wrong order is two lone halves
        b'{"a": "\xed\xa0\x80"}',  # a surrogate's bytes, which json.loads passes through
        '{"a": "\\ud800"}'.encode("utf-16"),
    ],
)
def test_lone_surrogates_are_not_json(raw: bytes) -> None:
    """Found by the fuzzer: a lone surrogate parsed into a str that every later `.encode()` refused
    (policy scanners, re-encoded bodies, subject hashes, chDB parameters): a 500 on many routes."""
    with pytest.raises(NotJson):
        parse_json(raw)


def test_surrogate_pairs_and_escaped_backslashes_parse() -> None:
    assert parse_json(b'{"a": "\\ud83d\\ude00", "b": "\\\\ud800"}') == {"a": "\U0001f600", "b": "\\ud800"}
    assert parse_json('{"a": "\U0001f600"}'.encode("utf-32")) == {"a": "\U0001f600"}
