"""PII with presidio-analyzer, offline by construction.

Never `AnalyzerEngine()` bare: it would download a spaCy model. The NLP engine is a blank spaCy
pipeline (tokens only; pattern recognizers need nothing more) unless a spaCy model folder is
configured, which brings NER for names and places. The e-mail recognizer checks domains against
tldextract's bundled suffix list instead of fetching one.

Speed: each entity has a cheap necessary condition (an '@' for e-mails, enough digits for phones
and cards) checked before presidio runs, so ordinary prose costs microseconds; phonenumbers, the
slow part, only sees digit runs that could be phone numbers.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from policies.document import ACTIONS, ParamError
from policies.findings import Finding
from policies.presidio_import import load_presidio
from policies.scanners import ScannerUnavailable, UserPattern, known_keys, regex, score, string_list
from policies.scanners.pii_recognizers import card_recognizer, not_an_address, phone_recognizer

if TYPE_CHECKING:
    from policies.runtime import Runtime

log = logging.getLogger(__name__)

_DIGITS = str.maketrans("", "", "0123456789")


def _digits(text: str) -> int:
    return len(text) - len(text.translate(_DIGITS))


# entity -> (placeholder label, necessary condition on the text)
PATTERN_ENTITIES: dict[str, tuple[str, Callable[[str, int], bool]]] = {
    "EMAIL_ADDRESS": ("EMAIL", lambda t, d: "@" in t),
    "PHONE_NUMBER": ("PHONE", lambda t, d: d >= 7),
    "CREDIT_CARD": ("CREDIT_CARD", lambda t, d: d >= 12),
    "IBAN_CODE": ("IBAN", lambda t, d: d >= 6),
    "IP_ADDRESS": ("IP_ADDRESS", lambda t, d: (d >= 4 and "." in t) or "::" in t or t.count(":") >= 2),
    "US_SSN": ("US_SSN", lambda t, d: d >= 9),
    "URL": ("URL", lambda t, d: "." in t),
}
# Need a spaCy model with NER (policies.pii_spacy_model).
NER_ENTITIES = {"PERSON": "PERSON", "LOCATION": "LOCATION", "NRP": "NRP", "ORGANIZATION": "ORG"}
DEFAULT_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN")
DEFAULT_THRESHOLD = 0.3
# National formats of these regions; numbers written with +country code are found for any region.
# Sixteen large economies: on bench/pii_quality.py they find 97% of phone numbers with no hard negative
# flagged; every region of phonenumbers finds 99% but flags 3% of hard negatives, at 4x the cost.
DEFAULT_REGIONS = (
    "US",
    "GB",
    "DE",
    "FR",
    "IN",
    "BR",
    "JP",
    "AU",
    "CA",
    "ES",
    "IT",
    "NL",
    "MX",
    "KR",
    "CN",
    "RU",
)
PARAMS = ("entities", "threshold", "phone_regions", "custom")
CUSTOM_KEYS = ("name", "regex", "score", "context", "label")


def check(params: dict[str, Any], stage: str, action: str) -> None:
    known_keys(params, PARAMS)
    if "threshold" in params:
        score(params["threshold"], ("threshold",))
    if "phone_regions" in params:
        for i, region in enumerate(string_list(params["phone_regions"], ("phone_regions",))):
            if len(region) != 2 or not region.isupper():
                raise ParamError(("phone_regions", i), "must be a two-letter region code such as US")
    custom_names = set()
    for i, item in enumerate(params.get("custom") or []):
        path: tuple[str | int, ...] = ("custom", i)
        if not isinstance(item, dict):
            raise ParamError(path, "must be a mapping with name and regex")
        for key in item:
            if key not in CUSTOM_KEYS:
                raise ParamError((*path, key), f"unknown key (known: {', '.join(CUSTOM_KEYS)})")
        name = item.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Z][A-Z0-9_]{0,40}", name):
            raise ParamError((*path, "name"), "must be an upper-case entity name such as EMPLOYEE_ID")
        regex(item.get("regex"), (*path, "regex"))
        if "score" in item:
            score(item["score"], (*path, "score"))
        if "context" in item:
            string_list(item["context"], (*path, "context"))
        if "label" in item and not re.fullmatch(r"[A-Z][A-Z0-9_]{0,40}", str(item["label"])):
            raise ParamError((*path, "label"), "must be upper-case letters, digits and _")
        custom_names.add(name)
    entities = _entity_options(params)
    if not isinstance(entities, dict) or not entities:
        raise ParamError(("entities",), "must be a list of entity names or a mapping name -> options")
    for name, options in entities.items():
        if name not in PATTERN_ENTITIES and name not in NER_ENTITIES and name not in custom_names:
            known = sorted([*PATTERN_ENTITIES, *NER_ENTITIES])
            raise ParamError(
                ("entities", name), f"unknown entity (known: {', '.join(known)}, or a custom one)"
            )
        options = options or {}
        if not isinstance(options, dict):
            raise ParamError(("entities", name), "must be a mapping (threshold, action)")
        for key in options:
            if key not in ("threshold", "action"):
                raise ParamError(("entities", name, key), "unknown key (known: threshold, action)")
        if "threshold" in options:
            score(options["threshold"], ("entities", name, "threshold"))
        if "action" in options and options["action"] not in ACTIONS:
            raise ParamError(("entities", name, "action"), f"must be one of {', '.join(ACTIONS)}")


def _entity_options(params: dict[str, Any]) -> Any:
    """`entities` as a mapping name -> options (a plain list of names means no options)."""
    entities = params.get("entities", list(DEFAULT_ENTITIES))
    return {name: {} for name in entities} if isinstance(entities, list) else entities


@dataclass(frozen=True, slots=True)
class _Entity:
    name: str
    label: str
    threshold: float
    action: str


# Long texts are analysed in windows of this many characters, each sharing `_OVERLAP` with the next.
_WINDOW = 4096
_OVERLAP = 256


class PiiScanner:
    level = "text"
    windowed = True

    def __init__(
        self, engine: PiiEngine, entities: list[_Entity], regions: tuple[str, ...], custom: list[Any]
    ):
        self._engine = engine
        self._entities = {e.name: e for e in entities}
        self._patterned = [e.name for e in entities if e.name in PATTERN_ENTITIES]
        self._always = [e.name for e in entities if e.name not in PATTERN_ENTITIES]
        self._phone = engine.phone_recognizer(regions) if "PHONE_NUMBER" in self._entities else None
        self._custom = custom
        self._floor = min(e.threshold for e in entities)

    def scan(self, text: str) -> list[Finding]:
        """Findings in `text`; a long text is analysed in overlapping windows, because presidio's cost
        grows faster than the text where entities are dense (context lookups, result copies)."""
        if len(text) <= _WINDOW:
            return self._scan_window(text)
        findings: list[Finding] = []
        step = _WINDOW - _OVERLAP
        for start in range(0, len(text), step):
            last = start + _WINDOW >= len(text)
            for f in self._scan_window(text[start : start + _WINDOW]):
                # A window owns the entities that start before the next window does; the overlap is
                # longer than any entity these recognizers find, so the next window sees the rest whole.
                if last or f.start < step:
                    findings.append(replace(f, start=f.start + start, end=f.end + start))
            if last:
                break
        return findings

    def _scan_window(self, text: str) -> list[Finding]:
        digits = _digits(text)
        wanted = [n for n in self._patterned if PATTERN_ENTITIES[n][1](text, digits)] + self._always
        if not wanted:
            return []
        ad_hoc = list(self._custom)
        if self._phone is not None and "PHONE_NUMBER" in wanted:
            ad_hoc.append(self._phone)
        results = self._engine.analyze(text, wanted, ad_hoc, self._floor)
        findings = []
        for r in results:
            entity = self._entities.get(r.entity_type)
            if entity is None or r.score < entity.threshold:
                continue
            if r.entity_type == "IP_ADDRESS" and not_an_address(text, r.start, r.end):
                continue
            findings.append(
                Finding(r.entity_type, round(r.score, 3), r.start, r.end, entity.label, entity.action)
            )
        return _settle(findings)


def _settle(findings: list[Finding]) -> list[Finding]:
    """Of two overlapping findings of different entities, the longer: a card-like run inside an IBAN, or
    a phone-like run that is an IP address, an SSN or part of a card, is one value, reported once."""
    kept: list[Finding] = []
    # On the same span a phone loses: nine digits after "SSN" are the SSN, though some region dials them.
    for f in sorted(findings, key=lambda f: (f.start, f.start - f.end, f.kind == "PHONE_NUMBER")):
        last = kept[-1] if kept else None
        if last is None or last.end <= f.start or last.kind == f.kind:
            kept.append(f)
        elif f.end - f.start > last.end - last.start:
            kept[-1] = f
    return kept


def build(params: dict[str, Any], runtime: Runtime) -> PiiScanner:
    engine: PiiEngine = runtime.pii_engine()
    threshold = float(params.get("threshold", DEFAULT_THRESHOLD))
    custom_specs = params.get("custom") or []
    labels = {c["name"]: c.get("label", c["name"]) for c in custom_specs}
    entities = []
    for name, options in _entity_options(params).items():
        options = options or {}
        if name in NER_ENTITIES and not engine.has_ner:
            raise ScannerUnavailable(
                f"entity {name} needs a spaCy model with NER: set policies.pii_spacy_model to its folder"
            )
        label = PATTERN_ENTITIES[name][0] if name in PATTERN_ENTITIES else labels.get(name, name)
        entities.append(
            _Entity(name, label, float(options.get("threshold", threshold)), str(options.get("action", "")))
        )
    custom = [engine.pattern_recognizer(c) for c in custom_specs]
    regions = tuple(params.get("phone_regions", DEFAULT_REGIONS))
    return PiiScanner(engine, entities, regions, custom)


class PiiEngine:
    """One presidio AnalyzerEngine per process (loading spaCy takes a while; analysis is thread-safe)."""

    def __init__(self, spacy_model: str = "") -> None:
        load_presidio(whole=bool(spacy_model))
        import spacy
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import SpacyNlpEngine
        from presidio_analyzer.predefined_recognizers import (
            IbanRecognizer,
            IpRecognizer,
            SpacyRecognizer,
            UrlRecognizer,
            UsSsnRecognizer,
        )

        class _LocalSpacy(SpacyNlpEngine):
            # SpacyNlpEngine.load would fetch a missing model; this one takes a folder or nothing.
            def load(self) -> None:
                self.pipeline = spacy.load(spacy_model) if spacy_model else spacy.blank("en")
                # presidio declares the attribute None until a load fills it
                self.nlp = {"en": self.pipeline}  # type: ignore[assignment]
                self._lemmatizes = "lemmatizer" in self.pipeline.pipe_names

            def _doc_to_nlp_artifact(self, doc: Any, language: str) -> Any:
                # Context words ("employee", "phone") are matched on lemmas; without a lemmatizer
                # the lower-cased token has to stand in, or context would never count.
                if not self._lemmatizes:
                    for token in doc:
                        token.lemma_ = token.lower_
                return super()._doc_to_nlp_artifact(doc, language)

        # presidio logs every recognizer it loads at INFO, per engine: noise in a server's log.
        logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)
        nlp = _LocalSpacy(models=[{"lang_code": "en", "model_name": spacy_model or "blank"}])
        nlp.load()
        self.has_ner = bool(spacy_model) and "ner" in nlp.pipeline.pipe_names
        registry = RecognizerRegistry(supported_languages=["en"])
        for recognizer in (
            _offline_email_recognizer(),
            card_recognizer(),
            IbanRecognizer(),
            IpRecognizer(),
            UsSsnRecognizer(),
            UrlRecognizer(),
        ):
            registry.add_recognizer(recognizer)
        if self.has_ner:
            registry.add_recognizer(SpacyRecognizer(supported_entities=list(NER_ENTITIES)))
        self._analyzer = AnalyzerEngine(
            registry=registry,
            nlp_engine=nlp,
            supported_languages=["en"],
            context_aware_enhancer=_indexed_context_enhancer(),
        )
        self._phones: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()
        log.info("PII engine ready (spaCy %s)", "model " + spacy_model if spacy_model else "blank pipeline")

    def analyze(self, text: str, entities: list[str], ad_hoc: list[Any], threshold: float) -> list[Any]:
        return self._analyzer.analyze(
            text,
            language="en",
            entities=entities,
            ad_hoc_recognizers=ad_hoc or None,
            score_threshold=threshold,
        )

    def phone_recognizer(self, regions: tuple[str, ...]) -> Any:
        with self._lock:
            if regions not in self._phones:
                self._phones[regions] = phone_recognizer(regions)
            return self._phones[regions]

    @staticmethod
    def pattern_recognizer(spec: dict[str, Any]) -> Any:
        from presidio_analyzer import PatternRecognizer

        return PatternRecognizer(
            supported_entity=spec["name"],
            name=f"custom_{spec['name']}",
            patterns=[_timed_pattern(spec["name"].lower(), spec["regex"], float(spec.get("score", 0.6)))],
            # presidio's default is None, though annotated as a list
            context=list(spec.get("context") or []) or None,  # type: ignore[arg-type]
        )


def _timed_pattern(name: str, regex: str, score: float) -> Any:
    """A presidio Pattern whose regex runs as a `UserPattern`: presidio's own limit is 60 s, and it skips
    a pattern that runs out of time (fails open); this one stops sooner and fails the rule."""
    from presidio_analyzer import Pattern

    class TimedPattern(Pattern):
        @property
        def compiled_regex(self) -> Any:
            return self._timed

        @compiled_regex.setter
        def compiled_regex(self, compiled: Any) -> None:
            self._timed = None if compiled is None else UserPattern(compiled)

    return TimedPattern(name, regex, score)


def _offline_email_recognizer() -> Any:
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    # The bundled Public Suffix List snapshot: no fetch, no cache directory.
    extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return extract(pattern_text).fqdn != ""

    return OfflineEmailRecognizer()


def _indexed_context_enhancer() -> Any:
    import bisect

    from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer

    class IndexedContextEnhancer(LemmaContextAwareEnhancer):
        """presidio's enhancer finds each entity's token by walking every token of the text, which
        makes entity-dense texts quadratic; the same lookup by bisection on token end offsets."""

        @staticmethod
        def _find_index_of_match_token(word: str, start: int, tokens: Any, tokens_indices: list[int]) -> int:
            store = getattr(tokens, "user_data", None)
            if not isinstance(store, dict):
                walk = LemmaContextAwareEnhancer._find_index_of_match_token
                return walk(word, start, tokens, tokens_indices)
            ends = store.get("warden_token_ends")
            if ends is None:
                ends = store["warden_token_ends"] = [t.idx + len(t) for t in tokens]
            # The first token that ends after `start`: the one at or around the entity's start.
            index = bisect.bisect_right(ends, start)
            if index >= len(ends):
                raise ValueError("the entity's token was not found")
            return index

    return IndexedContextEnhancer()
