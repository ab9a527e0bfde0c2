"""The one JSON parser for bodies Warden did not write: requests on every route, and upstream answers.

Python's parser recurses once per nesting level, so `[` x 100,000 raises RecursionError, which no
`except ValueError` catches: a 500 with a traceback. Here that, and any depth past `MAX_DEPTH`, is a
`NotJson` (a ValueError) whose message can go to the caller in a 400. The depth bound also protects
the code after parsing (policies, sealing, re-serialising), which recurses too.

Strings must be Unicode: Python's parser turns a lone surrogate (the escape `"\\ud800"`, or its bytes,
which `json.loads` decodes with "surrogatepass") into a `str` no UTF-8 encoder accepts, so a later
`.encode()` (scanners, re-encoded bodies, hashes, database drivers) raised: a 500. I-JSON (RFC 7493)
forbids them; here they are `NotJson`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

# Far deeper than any OpenAI request or admin call needs (JSON schemas in tools nest a few dozen levels).
MAX_DEPTH = 128
# A JSON string, matched possessively: linear on a body json.loads has already accepted.
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"')
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
# An escaped surrogate: in a pair (an ASCII-escaped emoji) it is fine, alone it is not Unicode.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class NotJson(ValueError):
    """A body that is not JSON Warden will read; the message says why, for the caller."""


def parse_json(raw: bytes) -> Any:
    """The JSON value in `raw`, nested at most `MAX_DEPTH` levels, or `NotJson`."""
    try:
        # Strict decoding (json.loads would pass surrogates' bytes through): raw ones are refused here.
        text = raw.decode(json.detect_encoding(raw))
        value = json.loads(text)
    except RecursionError:
        raise NotJson(f"it is nested more than {MAX_DEPTH} levels deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotJson(_short(exc)) from None
    # Counting brackets runs in C; only a body with enough of them to be too deep is measured.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth(raw) > MAX_DEPTH:
        raise NotJson(f"it is nested more than {MAX_DEPTH} levels deep")
    # Pairs are common (ASCII-escaped emoji); only a body with a surrogate escape is re-encoded, in C.
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise NotJson("a string holds a lone surrogate (\\ud800-\\udfff without its pair)") from None
    return value


def _depth(raw: bytes) -> int:
    """How deep the (valid) JSON document nests, at C speed: walking the parsed value in Python took
    8 s for 9 MB of `[[],[],...]`; this takes a fraction of the parse."""
    if json.detect_encoding(raw) != "utf-8":
        raw = raw.decode(json.detect_encoding(raw)).encode()
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int8)
    return int(np.cumsum(steps, dtype=np.int32).max())


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 120 else text[:117] + "..."
