"""Clean texts are scanned once per compiled policy and tenant; texts with a hit, every time."""

from __future__ import annotations

import pytest

from policies.document import parse_policy
from policies.engine import Blocked, CompiledPolicy, Report
from policies.findings import Placeholders
from policies.runtime import Runtime
from policies.scanners import checkers
from policies.scanners.secrets import SecretsScanner

POLICY = """apiVersion: warden/v1
metadata: {name: t, version: '1'}
rules:
  input:
    - {id: secrets, scanner: secrets, action: mask}
"""
KEY = "AKIAIOSFODNN7EXAMPLE"


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    original = SecretsScanner.scan

    def counting(self: SecretsScanner, text: str) -> list:  # type: ignore[type-arg]
        seen.append(text)
        return original(self, text)

    monkeypatch.setattr(SecretsScanner, "scan", counting)
    return seen


def policy(memo: int) -> CompiledPolicy:
    return CompiledPolicy(parse_policy(POLICY, "t.yaml", checkers()), Runtime(clean_memo=memo))


def check(compiled: CompiledPolicy, text: str, scope: str | None = "acme") -> str:
    return compiled.check_text("input", text, Placeholders(), Report("t"), scope=scope)


def test_a_clean_text_is_scanned_once_per_tenant(scans: list[str]) -> None:
    compiled = policy(memo=100)
    for _ in range(3):
        assert check(compiled, "You are a helpful assistant.") == "You are a helpful assistant."
    assert len(scans) == 1
    check(compiled, "You are a helpful assistant.", scope="globex")  # another tenant learns nothing
    check(compiled, "You are a helpful assistant.", scope=None)  # no scope: never remembered
    check(compiled, "You are a helpful assistant.", scope=None)
    assert len(scans) == 4


def test_a_text_with_a_hit_is_scanned_and_masked_every_time(scans: list[str]) -> None:
    compiled = policy(memo=100)
    for _ in range(3):
        assert check(compiled, f"my key is {KEY}") == "my key is <SECRET_1>"
    assert len(scans) == 3


def test_the_memo_is_bounded_and_can_be_off(scans: list[str]) -> None:
    compiled = policy(memo=4)
    for i in range(10):
        check(compiled, f"clean text {i}")
    check(compiled, "clean text 9")  # among the last four: remembered
    check(compiled, "clean text 0")  # evicted: scanned again
    assert len(scans) == 11
    off = policy(memo=0)
    check(off, "clean")
    check(off, "clean")
    assert len(scans) == 13


def test_a_block_is_never_remembered_as_clean(scans: list[str]) -> None:
    blocking = CompiledPolicy(
        parse_policy(POLICY.replace("action: mask", "action: block"), "t.yaml", checkers()),
        Runtime(clean_memo=100),
    )
    for _ in range(2):
        with pytest.raises(Blocked):
            check(blocking, f"key {KEY}")
    assert len(scans) == 2
