"""Banned words and patterns: whole-word matches (case-insensitive unless asked) and regexes."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from policies.document import ParamError
from policies.findings import Finding
from policies.scanners import UserPattern, known_keys, regex, string_list

if TYPE_CHECKING:
    from policies.runtime import Runtime

PARAMS = ("words", "regex", "case_sensitive", "label")


def check(params: dict[str, Any], stage: str, action: str) -> None:
    known_keys(params, PARAMS)
    if not params.get("words") and not params.get("regex"):
        raise ParamError((), "give 'words' or 'regex' (or both)")
    if "words" in params:
        string_list(params["words"], ("words",))
    for i, pattern in enumerate(string_list(params.get("regex", []), ("regex",))):
        regex(pattern, ("regex", i))
    if not isinstance(params.get("case_sensitive", False), bool):
        raise ParamError(("case_sensitive",), "must be true or false")
    if "label" in params and not re.fullmatch(r"[A-Z][A-Z0-9_]{0,40}", str(params["label"])):
        raise ParamError(("label",), "must be upper-case letters, digits and _")


class TermsScanner:
    level = "text"
    windowed = True

    def __init__(self, words: list[str], patterns: list[str], case_sensitive: bool, label: str) -> None:
        flags = 0 if case_sensitive else re.IGNORECASE
        self._words = (
            re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", flags)
            if words
            else None
        )
        self._patterns = [UserPattern(p, flags) for p in patterns]
        self._label = label

    def scan(self, text: str) -> list[Finding]:
        found = []
        if self._words is not None:
            found += [
                Finding("term", 1.0, m.start(), m.end(), self._label) for m in self._words.finditer(text)
            ]
        for pattern in self._patterns:
            found += [
                Finding("term:regex", 1.0, m.start(), m.end(), self._label)
                for m in pattern.finditer(text)
                if m.end() > m.start()
            ]
        return found


def build(params: dict[str, Any], runtime: Runtime) -> TermsScanner:
    words = params.get("words") or []
    patterns = params.get("regex") or []
    return TermsScanner(
        [words] if isinstance(words, str) else words,
        [patterns] if isinstance(patterns, str) else patterns,
        bool(params.get("case_sensitive", False)),
        str(params.get("label", "TERM")),
    )
