"""The literal words a regex match must start with, for a substring test that skips the regex.

Most of the injection scanner's 60 patterns start `\\b(?:ignore|disregard|...)`. Python's `re` cannot
skip ahead to a candidate position when a pattern starts with an assertion or an alternation, so each
search tried every position of every reading of the text: 0.85 ms for a 500-character prompt, the most
expensive scanner of the default policy (issue 16). A match must begin with one of those words, and
`word in text` runs in C: when none is there, the pattern cannot match and is not run.
"""

from __future__ import annotations

import re
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any

# Shorter words occur in almost any text: the test would cost more than it saves. A lone sign such as
# `<` or `[` is rare in prose and still worth it.
MIN_PREFIX = 2
_ZERO_WIDTH = (sre.AT, sre.ASSERT, sre.ASSERT_NOT)


def literal_prefixes(pattern: re.Pattern[str]) -> tuple[str, ...] | None:
    """Strings one of which every match of `pattern` starts with; None when no such set is known."""
    if pattern.flags & (re.IGNORECASE | re.VERBOSE):
        return None
    try:
        parsed = _parser.parse(pattern.pattern, pattern.flags)
    except re.error:
        return None
    prefixes = _starts(list(parsed))
    if not prefixes or any(len(p) < MIN_PREFIX and p.isalnum() for p in prefixes) or "" in prefixes:
        return None
    return tuple(sorted(set(prefixes)))


def _starts(items: list[tuple[Any, Any]]) -> list[str] | None:
    """The possible literal starts of a sequence of parsed items; None when one may start otherwise."""
    for at, (op, arg) in enumerate(items):
        if op in _ZERO_WIDTH:
            continue  # matches no character: what follows still starts the match
        if op is sre.LITERAL:
            text = ""
            for op2, arg2 in items[at:]:
                if op2 is not sre.LITERAL:
                    break
                text += chr(arg2)
            return [text]
        if op is sre.BRANCH:
            found: list[str] = []
            for alternative in arg[1]:
                starts = _starts(list(alternative))
                if not starts:
                    return None
                found.extend(starts)
            return found
        if op is sre.IN and arg and all(kind is sre.LITERAL for kind, _ in arg):
            return [chr(code) for _, code in arg]  # a small set of signs, e.g. [-=*#]
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            low, _, body = arg
            starts = _starts(list(body))
            if low > 0 or starts is None:
                return starts
            rest = _starts(items[at + 1 :])  # the optional part may be absent
            return None if rest is None else starts + rest
        if op is sre.SUBPATTERN:
            add_flags, del_flags = arg[1], arg[2]
            if add_flags or del_flags:
                return None
            return _starts(list(arg[3]))
        return None
    return None
