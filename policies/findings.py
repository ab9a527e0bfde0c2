"""What scanners report, and the per-request placeholder map that makes masking reversible."""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass
from functools import cache, partial
from typing import TYPE_CHECKING

from policies.presidio_import import load_presidio

if TYPE_CHECKING:
    from presidio_anonymizer import AnonymizerEngine


@dataclass(frozen=True, slots=True)
class Finding:
    """One detection. `start`/`end` locate a span for masking (-1 for a verdict on the whole text).
    The matched value itself is never kept: findings go to the event row."""

    kind: str
    score: float = 1.0
    start: int = -1
    end: int = -1
    label: str = ""  # placeholder label when masked, e.g. EMAIL for <EMAIL_1>
    action: str = ""  # overrides the rule's action for this finding (per-entity actions)

    @property
    def has_span(self) -> bool:
        return 0 <= self.start < self.end


PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]{0,40})_(\d{1,6})>")
# The longest placeholder text, so a stream never holds back less than one placeholder.
PLACEHOLDER_MAX = 50


class Placeholders:
    """One request's map from placeholders to the values they hide.

    Created per request and dropped with it: two requests never share a map, so one caller's
    data can never come back in another caller's answer. The same value gets the same
    placeholder within a request, which keeps the prompt coherent for the model.
    """

    __slots__ = ("_by_value", "_counts", "_values")

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._by_value: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self._values)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def longest(self) -> int:
        """Length of the longest restorable placeholder: what a stream must hold back to restore it."""
        return max((len(p) for p in self._values), default=0)

    def token(self, label: str, value: str, restorable: bool = True) -> str:
        """The value's placeholder. Values masked in an answer are not restorable: the client sees the
        placeholder, while the prompt's own values come back."""
        key = (label, value)
        existing = self._by_value.get(key)
        if existing is not None:
            return existing
        number = self._counts.get(label, 0) + 1
        self._counts[label] = number
        placeholder = f"<{label}_{number}>"
        if restorable:
            self._values[placeholder] = value
        self._by_value[key] = placeholder
        return placeholder

    def restore(self, text: str, *, json_text: bool = False) -> str:
        """`text` with this request's placeholders replaced by their values. `json_text`: the text is
        JSON source (tool-call arguments), so a value goes in JSON-escaped and the document stays valid."""
        if not self._values or "<" not in text:
            return text
        if json_text:
            return PLACEHOLDER.sub(lambda m: _json_escaped(self._values.get(m.group(0), m.group(0))), text)
        return PLACEHOLDER.sub(lambda m: self._values.get(m.group(0), m.group(0)), text)


def _json_escaped(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


def mask_spans(
    text: str, findings: list[Finding], placeholders: Placeholders, restorable: bool = True
) -> str:
    """Replace each finding's span by its placeholder, through presidio-anonymizer. Overlaps keep the
    higher score, then the longer span: a phone-like run inside a card number is one entity."""
    spans: list[Finding] = []
    # Kept spans never overlap, so sorted by start they are sorted by end too: one bisection finds the
    # only neighbours a new span could overlap (a scan of every kept span made dense texts quadratic).
    starts: list[int] = []
    for f in sorted((f for f in findings if f.has_span), key=lambda f: (-f.score, f.start - f.end)):
        at = bisect.bisect_right(starts, f.start)
        if at > 0 and spans[at - 1].end > f.start:
            continue
        if at < len(spans) and spans[at].start < f.end:
            continue
        starts.insert(at, f.start)
        spans.insert(at, f)
    if not spans:
        return text
    # Number placeholders left to right: the anonymizer itself works from the end of the text.
    for f in spans:
        placeholders.token(_label(f), text[f.start : f.end], restorable)
    anonymizer = _anonymizer()
    from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

    results = [RecognizerResult(_label(f), f.start, f.end, f.score) for f in spans]
    operators = {
        label: OperatorConfig("custom", {"lambda": partial(placeholders.token, label, restorable=restorable)})
        for label in {r.entity_type for r in results}
    }
    # No merging of neighbours: two cards in a row are two values, whether seen together or apart.
    return anonymizer.anonymize(text, results, operators, merge_entities_with_spaces=False).text


def _label(finding: Finding) -> str:
    return finding.label or finding.kind.upper()


@cache
def _anonymizer() -> AnonymizerEngine:
    load_presidio()
    from presidio_anonymizer import AnonymizerEngine

    return AnonymizerEngine()
