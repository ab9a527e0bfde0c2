"""Every pattern that sees user text runs in linear time, and user-supplied ones under a time limit.

Python's `re` holds the GIL while it matches, so one backtracking pattern on a crafted prompt stops every
thread of a worker (`"eyJ-" * 50000` took 5.8 s through the old `jwt` pattern). Each built-in pattern is
timed on adversarial texts of 10k and 100k characters; ten times the text may cost at most 25 times the
time (quadratic growth costs 100 times).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from policies.document import parse_policy
from policies.engine import Blocked, CompiledPolicy, Report
from policies.findings import PLACEHOLDER, Placeholders
from policies.runtime import Runtime
from policies.scanners import checkers, secrets
from policies.scanners.injection import FAMILIES, InjectionScanner
from policies.scanners.pii_recognizers import (
    CARD_CANDIDATE,
    NOT_A_PHONE,
    NOT_A_PHONE_BEFORE,
    NOT_PII_BEFORE,
    PHONE_CANDIDATE,
    VERSION_BEFORE,
)
from policies.scanners.terms import TermsScanner
from policies.store import BUILTIN
from proxy.gateway.refusal import _REFUSAL

EXAMPLES = Path(__file__).parents[2] / "examples"

# Pieces that start a match (a prefix, a separator, a near-miss) repeated or padded: the shapes that make
# a backtracking engine retry from every start and scan to the end each time.
UNITS = [
    "eyJ-", "eyJ", "eyJaaaaaaaaa.", "eyJaaaaaaaaa.eyJaaaaaaaaa.", "sk-", "sk--", "sk-ant-", "sk-proj-",
    "ghp_", "github_pat_", "glpat-", "xoxb-", "sk_live_", "rk_test_", "AIza", "wdn-", "AKIA", "ASIA",
    "-----BEGIN ", "-----BEGIN A ", "a://", "a://b:", "a://b:c", "ab+.-://", "1 ", "+1", "(1", "1-", "1.",
    "<A_1", "<EMAIL_", "<", "@", "a@", "a.b@", "a@b.", "1.1.", "4111 ", "DE89 ", "000-00-", "i ", "i'm ",
    "a", "-", "_", ".", " ", "aA0_-.",
]  # fmt: skip


# What starts a match of an injection pattern: a keyword, a token's opening, a run of delimiter characters
# (a run once made `[-=*#]{4,}` quadratic), an encoded payload's alphabet.
INJECTION_UNITS = [
    "ignore ", "ignore all ", "a ", "<|", "[inst]", "<system>", "#", "-", "=", "*", "## ", ", ", "aGVsbG8",
    "00", "0 ", "![", "you ", "to ", "\u200b",
]  # fmt: skip


def adversarial(size: int, units: list[str] = UNITS, padded: bool = True) -> list[str]:
    texts = []
    for unit in units:
        texts.append((unit * (size // len(unit) + 1))[:size])
        for pad in ("a", "-", "0", "aA0_-") if padded else ():
            texts.append(unit + (pad * size)[: size - len(unit)])
    return texts


def best_of(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def assert_linear(
    name: str, scan: Callable[[str], object], floor_s: float = 0.1, units: list[str] = UNITS
) -> None:
    """10x the text may cost at most 25x the time. Below `floor_s` at 100k the scan is fast whatever its
    growth (the quadratic patterns this guards against take seconds there), so it passes; a suspect
    ratio is timed again, best of 5, before it fails, as other processes share these cores."""
    padded = units is UNITS
    small, large = adversarial(10_000, units, padded), adversarial(100_000, units, padded)
    for i, (short, long) in enumerate(zip(small, large, strict=True)):
        t_large = best_of(2 if padded else 1, lambda long=long: scan(long))
        if t_large <= floor_s:
            continue
        t_small = best_of(3, lambda short=short: scan(short))
        if t_large > 25 * t_small:
            t_small = best_of(5, lambda short=short: scan(short))
            t_large = best_of(5, lambda long=long: scan(long))
        assert t_large <= 25 * t_small, (
            f"{name}: {t_small * 1e3:.2f} ms at 10k but {t_large * 1e3:.1f} ms at 100k on text #{i} "
            f"({long[:24]!r}...): super-linear"
        )


def finditer_all(pattern: re.Pattern[str]) -> Callable[[str], object]:
    return lambda text: sum(1 for _ in pattern.finditer(text))


@pytest.mark.parametrize("kind", sorted(secrets.PATTERNS))
def test_each_secret_pattern_is_linear(kind: str) -> None:
    scanner = secrets.SecretsScanner({kind: secrets.PATTERNS[kind]})
    assert_linear(f"secrets.{kind}", scanner.scan)


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("phone candidate", PHONE_CANDIDATE),
        ("card candidate", CARD_CANDIDATE),
        ("not-PII context", NOT_PII_BEFORE),
        ("version context", VERSION_BEFORE),
        ("not a phone", NOT_A_PHONE),
        ("not-a-phone context", NOT_A_PHONE_BEFORE),
        ("placeholder", PLACEHOLDER),
        ("refusal", _REFUSAL),
    ],
)
def test_each_helper_pattern_is_linear(name: str, pattern: re.Pattern[str]) -> None:
    assert_linear(name, finditer_all(pattern))


def test_banned_words_pattern_is_linear() -> None:
    scanner = TermsScanner(["sk", "eyJ", "a", "BEGIN", "i'm"], [], False, "TERM")
    assert_linear("terms.words", scanner.scan)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_injection_family_is_linear(family: str) -> None:
    scanner = InjectionScanner(0.5, (family,))
    assert_linear(f"injection.{family}", scanner.scan, units=INJECTION_UNITS)


def example_regexes() -> list[tuple[str, str]]:
    """The single-quoted regexes of the shipped policy files and the README's policy examples (YAML
    single quotes keep backslashes as written)."""
    found = []
    for path in [BUILTIN, *sorted(EXAMPLES.glob("*.yaml")), EXAMPLES.parent / "README.md"]:
        for i, line in enumerate(path.read_text().splitlines()):
            for match in re.finditer(r"\bregex:\s*\[?'([^']+)'", line):
                found.append((f"{path.name}:{i + 1}", match.group(1)))
    return found


def test_example_regexes_are_linear() -> None:
    examples = example_regexes()
    assert len(examples) >= 2, "the README's policy example has regexes: the reader must find them"
    for where, pattern in examples:
        assert_linear(where, TermsScanner([], [pattern], False, "TERM").scan)


def test_the_default_policy_scans_hostile_prompts_in_linear_time(runtime: Runtime) -> None:
    policy = CompiledPolicy(parse_policy(BUILTIN.read_text(), str(BUILTIN), checkers()), runtime)

    def scan(text: str) -> None:
        with contextlib.suppress(Blocked):
            policy.check_text("input", text, Placeholders(), Report("t"))

    # The whole pipeline (presidio, phonenumbers, masking) on the texts densest in candidate entities.
    dense = ["1.1.", "1-", "000-00-", "a@b.", "a.b@", "eyJ-", "<A_1", "4111 ", "DE89 ", "+1"]
    assert_linear("default policy", scan, floor_s=0.5, units=dense)


def test_a_catastrophic_user_regex_is_stopped_and_the_rule_fails_closed(runtime: Runtime) -> None:
    """Built-ins are linear by construction; a policy author's regex runs under a time limit instead, and
    running out of time is a scanner error: the rule's `on_error` (block by default) decides."""
    text = (
        "apiVersion: warden/v1\nmetadata: {name: t, version: '1'}\nrules:\n  input:\n"
        "    - {id: t, scanner: terms, action: flag, params: {regex: '(a|aa)+$'}}\n"
    )
    policy = CompiledPolicy(parse_policy(text, "t.yaml", checkers()), runtime)
    start = time.perf_counter()
    with pytest.raises(Blocked) as blocked:
        policy.check_text("input", "a" * 40 + "!", Placeholders(), Report("t"))
    assert time.perf_counter() - start < 5
    assert blocked.value.hit.kind == "error:terms"
