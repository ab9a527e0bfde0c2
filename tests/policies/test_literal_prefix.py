"""The literal-prefix test may skip a regex only when the regex cannot match (issue 16)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.literal_prefix import literal_prefixes
from policies.normalize import views
from policies.scanners.injection import FAMILY_PATTERNS
from tests.support import ROOT

PATTERNS = [re.compile(p) for family in FAMILY_PATTERNS.values() for p, _ in family]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"\b(?:ignore|disregard)\s+rules", ("disregard", "ignore")),
        (r"(?<!\S)assistant\s?:", ("assistant",)),
        (r"\b(?:the\s)?user\s", ("the", "user")),
        (r"[-=*#]{4,}", ("#", "*", "-", "=")),
        (r"</?system>", ("<",)),
        (r"(?:a|bc)d", None),  # a lone letter is in almost every text
        (r"(?i)ignore", None),  # case-folded: a plain substring test would be wrong
        (r"(?:foo|)bar", None),  # an empty alternative may start anywhere
        (r"\w+ing", None),
    ],
)
def test_prefixes_of_pattern_shapes(pattern: str, expected: tuple[str, ...] | None) -> None:
    assert literal_prefixes(re.compile(pattern)) == expected


def test_every_injection_pattern_has_a_prefix() -> None:
    assert [p.pattern for p in PATTERNS if literal_prefixes(p) is None] == []


def _sound(text: str) -> None:
    for view in views(text):
        for pattern in PATTERNS:
            starts = literal_prefixes(pattern)
            if pattern.search(view.text) is not None:
                assert starts is None or any(s in view.text for s in starts), (pattern.pattern, view.text)


def test_no_labelled_attack_is_skipped() -> None:
    corpus = ROOT / "bench" / "corpus" / "injection.jsonl"
    texts = [json.loads(line)["text"] for line in corpus.read_text().splitlines() if line.strip()]
    assert len(texts) > 300
    for text in texts:
        _sound(text)


WORDS = [
    "ignore",
    "previous",
    "instructions",
    "system",
    ":",
    "you",
    "are",
    "now",
    "dan",
    "mode",
    "<",
    ">",
    "/",
    "#",
    "-",
    "[inst]",
    "assistant",
    "sure",
    "\n",
    " ",
    "all",
    "rules",
    "developer",
    "enabled",
]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=30))
def test_no_match_is_skipped_on_generated_texts(words: list[str]) -> None:
    _sound(" ".join(words))
    _sound("".join(words))
