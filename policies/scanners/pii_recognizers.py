"""Warden's own recognizers for phone and card numbers, and the context checks presidio lacks.

Measured on `bench/pii_quality.py` (issue 14): presidio's card pattern misses Mastercard 2-series, 15-digit
JCB, 12-digit Maestro and 19-digit Visa; phone numbers with an extension never reached libphonenumber;
timestamps, version strings and order numbers were masked. What this module decides, and why:

- A phone candidate is a run of digits and separators with an optional extension (`x549`, `ext. 12`,
  `#12`). libphonenumber sees it with `_CONTEXT` characters either side, because its own checks for
  timestamps (`2017-07-25 20` followed by `:15`) and for a number glued to letters read the
  surroundings; only matches that overlap the candidate count.
- A card is 12 to 19 digits, optionally grouped by spaces or dashes, with a valid Luhn digit, a length its
  issuer range issues, and no other digit group glued on either side (IBANs, longer ids).
- A number right after a word such as `order`, `invoice`, `ticket` or `tracking` is that, not a phone or
  a card; an IPv4-shaped number inside a version-like token (`v1.2.3.4`, `rv:1.9.2.20`,
  `version 3.1.85.78`, `1.2.3.4.5`) is a version.

Every pattern here is linear: bounded repetitions, no nested quantifiers
(tests/policies/test_regex_linear.py).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

# Runs of digits and separators that could be a phone number, with an optional extension.
PHONE_CANDIDATE = re.compile(
    r"(?P<number>(?:\+|\(|\b)\d[\d \t().\-/]{5,22}\d)(?P<ext>[ \t]?(?:x|ext\.?|#)[ \t]?\d{1,6})?\b"
)
# 12 to 19 digits, grouped by single spaces or dashes, with no digit group, letter or sign glued on.
CARD_CANDIDATE = re.compile(r"(?<![\w+\-.,/])\d(?:[ -]?\d){11,18}(?![ -]?\d)(?![\w.,/-]\w)")
# Several grouped numbers in a row (`4111 1111 1111 1111 5500 0000 0000 0004`): too long for one card,
# but possibly cards one after another. Linear: groups and separators are disjoint classes.
CARD_RUN = re.compile(r"(?<![\w+\-.,/])\d{1,19}(?:[ -]\d{1,19}){1,11}(?![ -]?\d)(?![\w.,/-]\w)")
# A short group of letters or digits right before a candidate, joined by one space or dash: the candidate
# is the tail of a longer grouped number (an IBAN's `DE89 3704 ...`), not a card. A number with a dot
# before it (`10.0.0.1 4111 ...`) is another value, and the card after it is one.
_GROUP_BEFORE = re.compile(r"(?<![\w.])[A-Za-z]{0,2}\d{1,4}[ -]$")
# An IPv4 address, or a decimal number (coordinates, amounts): never a phone number.
NOT_A_PHONE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}|\d{1,3}\.\d{4,}")
# A number after one of these words (and an optional `no.`, `number`, `#`, `:`) is not a phone or card.
_NOT_PII_WORDS = (
    "order|invoice|inv|ticket|tracking|ref|reference|serial|part|po|isbn|case|shipment|sku|issue|bug|pr|"
    "job|batch|lot|receipt|build|version"
)
# Each run of blanks has one place to go (never two stars side by side), so matching stays linear.
_LABEL_TAIL = r"[ \t]*(?:(?:no\.?|nr\.?|num\.?|number|id|#)[ \t]*)?(?:[#:=][ \t]*)?[(+]?$"
NOT_PII_BEFORE = re.compile(rf"(?i)\b(?:{_NOT_PII_WORDS})" + _LABEL_TAIL)
# Ids, accounts and clock readings are not phone numbers, but a card number is often called an account
# number or an id: for cards only the words above count.
NOT_A_PHONE_BEFORE = re.compile(
    rf"(?i)\b(?:{_NOT_PII_WORDS}|id|account|acct|transaction|txn|epoch|ms|timestamp|ts)" + _LABEL_TAIL
)
VERSION_BEFORE = re.compile(
    r"(?i)(?:\b(?:v|rv|ver|version|build|release|firmware|kernel|update|patch|package)[ \t]*(?:[:=][ \t]*)?"
    r"|[A-Za-z]|\d\.)$"
)
VERSION_AFTER = re.compile(r"^(?:\.\w|-[A-Za-z\d])")
_LOOKBACK = 32
# Characters of text either side of a phone candidate that libphonenumber sees.
_CONTEXT = 12

# (lowest prefix, highest prefix, lengths): issuer ranges of every card brand in use.
_ANY = range(16, 20)
CARD_RANGES: tuple[tuple[str, str, range | tuple[int, ...]], ...] = (
    ("4", "4", (13, 16, 19)),  # Visa
    ("51", "55", (16,)),  # Mastercard
    ("2221", "2720", (16,)),  # Mastercard 2-series
    ("34", "34", (15,)),  # American Express
    ("37", "37", (15,)),
    ("6011", "6011", _ANY),  # Discover
    ("644", "649", _ANY),
    ("65", "65", _ANY),
    ("3528", "3589", _ANY),  # JCB
    ("1800", "1800", (15,)),  # JCB, 15 digits
    ("2131", "2131", (15,)),
    ("300", "305", range(14, 20)),  # Diners Club
    ("3095", "3095", range(14, 20)),
    ("36", "36", range(14, 20)),
    ("38", "39", range(14, 20)),
    ("50", "50", range(12, 20)),  # Maestro (5018, 5020, 5038...), Verve
    ("56", "69", range(12, 20)),  # Maestro, UnionPay (62), RuPay (60), Discover
    ("2200", "2204", _ANY),  # Mir
    ("81", "82", _ANY),  # UnionPay, RuPay
    ("9792", "9792", (16,)),  # Troy
)


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_card_number(digits: str) -> bool:
    """A number some issuer hands out: an issuer range that issues this length, and a valid Luhn digit."""
    if not 12 <= len(digits) <= 19:
        return False
    for low, high, lengths in CARD_RANGES:
        if len(digits) in lengths and low <= digits[: len(low)] <= high:
            return luhn(digits)
    return False


def labelled_not_pii(text: str, start: int, words: re.Pattern[str] = NOT_PII_BEFORE) -> bool:
    """The number at `start` follows a word that names it something else (`Order #`, `invoice no.`)."""
    return words.search(text, max(start - _LOOKBACK, 0), start) is not None


def not_an_address(text: str, start: int, end: int) -> bool:
    """The IP-shaped text[start:end] is a version string, or an address that names no one (0.0.0.0,
    loopback)."""
    try:
        address = ipaddress.ip_address(text[start:end])
    except ValueError:
        address = None
    if address is not None and (address.is_unspecified or address.is_loopback):
        return True
    return version_like(text, start, end)


def version_like(text: str, start: int, end: int) -> bool:
    """The dotted number at text[start:end] is part of a version string rather than an IP address."""
    return (
        VERSION_BEFORE.search(text, max(start - _LOOKBACK, 0), start) is not None
        or VERSION_AFTER.match(text[end : end + 2]) is not None
    )


def _result(recognizer: Any, entity: str, start: int, end: int) -> Any:
    from presidio_analyzer import AnalysisExplanation, RecognizerResult

    return RecognizerResult(
        entity_type=entity,
        start=start,
        end=end,
        score=recognizer.SCORE,
        # presidio's context enhancer writes into the explanation
        analysis_explanation=AnalysisExplanation(type(recognizer).__name__, recognizer.SCORE),
        recognition_metadata={
            RecognizerResult.RECOGNIZER_NAME_KEY: recognizer.name,
            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: recognizer.id,
        },
    )


def _cards_in_a_row(run: re.Match[str]) -> list[tuple[int, int]]:
    """The cards a run of grouped digits is made of, cut at group boundaries, when every part of it is
    a card; none when it is one number (a long id), or the run is short enough to be a single card."""
    groups = [(m.start() + run.start(), m.end() + run.start()) for m in re.finditer(r"\d+", run.group())]
    if sum(end - start for start, end in groups) <= 19:
        return []
    cards = []
    first, digits = 0, ""
    for index, (start, end) in enumerate(groups):
        digits += run.string[start:end]
        if 12 <= len(digits) <= 19 and is_card_number(digits):
            cards.append((groups[first][0], end))
            first, digits = index + 1, ""
        elif len(digits) > 19:
            return []
    return cards if not digits else []


def card_recognizer() -> Any:
    from presidio_analyzer import LocalRecognizer

    class CardRecognizer(LocalRecognizer):
        SCORE = 0.6

        def __init__(self) -> None:
            super().__init__(supported_entities=["CREDIT_CARD"], name="WardenCardRecognizer")

        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            found = []
            for match in CARD_CANDIDATE.finditer(text):
                value = match.group()
                if " " in value and "-" in value:
                    continue
                if _GROUP_BEFORE.search(text, max(match.start() - 6, 0), match.start()):
                    continue
                if is_card_number(value.replace(" ", "").replace("-", "")) and not labelled_not_pii(
                    text, match.start()
                ):
                    found.append(self._result(match.start(), match.end()))
            for run in CARD_RUN.finditer(text):
                if _GROUP_BEFORE.search(text, max(run.start() - 6, 0), run.start()):
                    continue
                if labelled_not_pii(text, run.start()):
                    continue
                found += [self._result(start, end) for start, end in _cards_in_a_row(run)]
            return found

        def _result(self, start: int, end: int) -> Any:
            return _result(self, "CREDIT_CARD", start, end)

    return CardRecognizer()


def phone_recognizer(regions: tuple[str, ...]) -> Any:
    import phonenumbers
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    _VALID = phonenumbers.Leniency.VALID

    class CandidatePhoneRecognizer(PhoneRecognizer):
        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            found: list[Any] = []
            for match in PHONE_CANDIDATE.finditer(text):
                number = match.group("number")
                # E.164 numbers have at most 15 digits, and none fewer than 7 is worth parsing: card
                # numbers, IBANs and IP addresses never reach phonenumbers, the slow part.
                if not 7 <= sum(c.isdigit() for c in number) <= 15 or NOT_A_PHONE.fullmatch(number):
                    continue
                if labelled_not_pii(text, match.start(), NOT_A_PHONE_BEFORE):
                    continue
                lo = max(match.start() - _CONTEXT, 0)
                piece = text[lo : match.end() + _CONTEXT]
                # A number written with its country code parses the same in any region.
                for region in regions[:1] if number.startswith("+") else regions:
                    matches = phonenumbers.PhoneNumberMatcher(piece, region, leniency=_VALID)
                    hits = [m for m in matches if lo + m.start < match.end() and lo + m.end > match.start()]
                    if hits:
                        found.extend(self._result(lo + m.start, lo + m.end) for m in hits)
                        break
            return found

        def _result(self, start: int, end: int) -> Any:
            return _result(self, "PHONE_NUMBER", start, end)

    return CandidatePhoneRecognizer(supported_regions=list(regions))
