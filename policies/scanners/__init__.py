"""Scanners: each finds one kind of problem in a text (or a request) and reports findings.

A scanner never decides what happens: the policy's rule says block, mask, flag or log, and one
pipeline (policies.engine) applies it. `check` validates a rule's params when the file is read;
`build` makes the scanner when the policy is compiled, with the process's shared models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from policies.document import ParamError
from policies.findings import Finding

if TYPE_CHECKING:
    from policies.runtime import Runtime


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What request-level scanners see: never the text itself."""

    model: str
    route: str
    chars: int
    utf8_bytes: int


class Scanner(Protocol):
    # "text": scans each text; "request": judges the request as a whole (size, model).
    level: str
    # True when findings are local to a span, so a stream can be scanned window by window.
    windowed: bool

    def scan(self, text: str) -> list[Finding]: ...


class RequestScanner(Protocol):
    level: str
    windowed: bool

    def scan_request(self, facts: RequestFacts) -> list[Finding]: ...


class ScannerUnavailable(Exception):
    """The scanner cannot run in this process (e.g. no model configured); the message says why."""


Checker = Callable[[dict[str, Any], str, str], None]
AnyScanner: TypeAlias = Scanner | RequestScanner
# None: the rule's model is not configured, so the rule is inactive.
Builder = Callable[[dict[str, Any], "Runtime"], AnyScanner | None]


@dataclass(frozen=True, slots=True)
class ScannerKind:
    check: Checker
    build: Builder
    stages: tuple[str, ...] = ("input", "output")


def registry() -> dict[str, ScannerKind]:
    from policies.scanners import injection, limits, pii, secrets, terms, toxicity

    return {
        "pii": ScannerKind(pii.check, pii.build),
        "toxicity": ScannerKind(toxicity.check, toxicity.build),
        "secrets": ScannerKind(secrets.check, secrets.build),
        "terms": ScannerKind(terms.check, terms.build),
        "injection": ScannerKind(injection.check, injection.build),
        "max_input": ScannerKind(limits.check_max_input, limits.build_max_input, ("input",)),
        "models": ScannerKind(limits.check_models, limits.build_models, ("input",)),
    }


def checkers() -> dict[str, Checker]:
    """name -> params checker (which also refuses a stage the scanner does not support)."""

    def staged(kind: ScannerKind) -> Checker:
        def check(params: dict[str, Any], stage: str, action: str) -> None:
            if stage not in kind.stages:
                raise ParamError((), f"this scanner only runs on {', '.join(kind.stages)}", "scanner")
            kind.check(params, stage, action)

        return check

    return {name: staged(kind) for name, kind in registry().items()}


# -- shared parameter helpers ----------------------------------------------------------------


def known_keys(params: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in params:
        if key not in allowed:
            raise ParamError((key,), f"unknown parameter (known: {', '.join(allowed)})")


def score(value: Any, path: tuple[str | int, ...]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ParamError(path, "must be a number from 0 to 1")
    return float(value)


def positive_int(value: Any, path: tuple[str | int, ...]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ParamError(path, "must be a positive integer")
    return value


def string_list(value: Any, path: tuple[str | int, ...]) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ParamError(path, "must be a list of non-empty strings")
    return value


def regex(value: Any, path: tuple[str | int, ...]) -> str:
    import regex as user_re

    if not isinstance(value, str) or not value:
        raise ParamError(path, "must be a regular expression")
    try:
        user_re.compile(value)
    except user_re.error as exc:
        raise ParamError(path, f"invalid regular expression: {exc}") from None
    return value


# -- policy authors' regexes -----------------------------------------------------------------

# A policy author's regex may backtrack catastrophically on some text. Built-in patterns are linear by
# construction; these run on the `regex` engine, which releases the GIL while matching and stops a scan of one
# text after this long (all its matches together). Running out of time is a scanner error: the rule's
# `on_error` (block by default) decides.
USER_REGEX_TIMEOUT_S = 1.0


class RegexTimeout(RuntimeError):
    """A policy author's regex ran out of time on a text (not a TimeoutError: presidio swallows those)."""


class UserPattern:
    """A policy author's regex, matched under `USER_REGEX_TIMEOUT_S` per text."""

    __slots__ = ("_compiled",)

    def __init__(self, pattern: str | Any, flags: int = 0) -> None:
        import regex as user_re

        self._compiled = user_re.compile(pattern, flags) if isinstance(pattern, str) else pattern

    def finditer(self, text: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        kwargs["timeout"] = USER_REGEX_TIMEOUT_S
        try:
            yield from self._compiled.finditer(text, *args, **kwargs)
        except TimeoutError:
            raise RegexTimeout(f"a policy regex ran longer than {USER_REGEX_TIMEOUT_S} s") from None
