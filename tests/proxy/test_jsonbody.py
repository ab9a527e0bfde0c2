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
