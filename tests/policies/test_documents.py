"""Policy files: strict validation with file:line: key errors, extends, and the CLI that checks them."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from policies.document import PolicyError, load_policy_file, parse_policy
from policies.scanners import checkers
from policies.store import BUILTIN, resolve
from proxy.cli.main import main

GOOD = """apiVersion: warden/v1
metadata:
  name: support
  version: "3"
scope:
  teams: [support]
rules:
  input:
    - id: pii
      scanner: pii
      action: mask
"""

ERRORS = [
    ("apiVersion: v2\nmetadata: {name: a, version: '1'}\nrules: {}\n", 1, "apiVersion: must be 'warden/v1'"),
    ("apiVersion: warden/v1\nmetadata: {name: a}\nrules: {}\n", 2, "missing required key 'version'"),
    (GOOD.replace("action: mask", "action: redact"), 11, "rules.input[0].action: must be one of block"),
    (GOOD.replace("scanner: pii", "scanner: pi"), 10, "rules.input[0].scanner: unknown scanner"),
    (GOOD.replace("teams: [support]", "groups: [support]"), 6, "scope.groups: unknown key"),
    (
        GOOD + "      params: {entities: [EMAIL, PHONE_NUMBER]}\n",
        12,
        "rules.input[0].params.entities.EMAIL: unknown entity",
    ),
    (
        GOOD + "      params: {threshold: 2}\n",
        12,
        "rules.input[0].params.threshold: must be a number from 0 to 1",
    ),
    (GOOD + "      mode: shadow\n", 12, "rules.input[0].mode: must be one of enforce, monitor, off"),
    (GOOD + "    - {id: pii, scanner: secrets, action: block}\n", 12, "duplicate rule id 'pii'"),
    (
        GOOD + "  output:\n    - {scanner: max_input, action: block, params: {chars: 5}}\n",
        13,
        "rules.output[0].scanner: this scanner only runs on input",
    ),
    (
        GOOD + "    - {scanner: terms, action: block, params: {regex: ['(unclosed']}}\n",
        12,
        "invalid regular expression",
    ),
    (
        GOOD + "    - {scanner: toxicity, action: mask}\n",
        12,
        "rules.input[1].action: toxicity judges a whole text and cannot mask",
    ),
    (GOOD + "tests:\n  - {text: hi}\n", 13, "a case needs 'text' and 'expect'"),
    ("apiVersion: warden/v1\nmetadata: [\n", 3, "invalid YAML"),
]


@pytest.mark.parametrize(("text", "line", "message"), ERRORS)
def test_validation_errors_name_file_line_and_key(text: str, line: int, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "team.yaml", checkers())
    assert str(caught.value).startswith(f"team.yaml:{line}: "), str(caught.value)
    assert message in str(caught.value)


def test_extends_replaces_rules_by_id_and_adds_new_ones() -> None:
    known = checkers()
    child = parse_policy(
        """apiVersion: warden/v1
metadata: {name: strict, version: '2'}
extends: default
scope: {teams: [legal]}
rules:
  input:
    - {id: secrets, scanner: secrets, action: flag}
    - {id: toxicity, scanner: toxicity, action: flag, mode: off}
    - {id: codename, scanner: terms, action: block, params: {words: [falcon]}}
""",
        "strict.yaml",
        known,
    )
    (merged,) = resolve([child], load_policy_file(BUILTIN, known))
    assert [(r.id, r.action, r.mode) for r in merged.rules] == [
        ("size", "block", "enforce"),
        ("pii", "mask", "enforce"),
        ("secrets", "flag", "enforce"),
        ("toxicity", "flag", "off"),
        ("injection", "flag", "monitor"),
        ("codename", "block", "enforce"),
    ]
    assert merged.label == "strict@2"


def test_extends_unknown_and_cycles_are_errors() -> None:
    known = checkers()
    builtin = load_policy_file(BUILTIN, known)
    a = parse_policy(
        "apiVersion: warden/v1\nmetadata: {name: a, version: '1'}\nextends: b\nrules: {}\n", "a.yaml", known
    )
    b = parse_policy(
        "apiVersion: warden/v1\nmetadata: {name: b, version: '1'}\nextends: a\nrules: {}\n", "b.yaml", known
    )
    with pytest.raises(PolicyError, match="a cycle"):
        resolve([a, b], builtin)
    with pytest.raises(PolicyError, match="no policy named 'b'"):
        resolve([a], builtin)


def test_cli_validate_and_test(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        GOOD
        + """tests:
  - name: masks mail
    text: "mail x@y.io"
    expect: {decision: mask, text: "mail <EMAIL_1>", findings: [EMAIL_ADDRESS]}
"""
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("action: mask", "action: redact"))
    failing = tmp_path / "failing.yaml"
    failing.write_text(
        GOOD + "tests:\n  - name: wrong on purpose\n    text: 'mail x@y.io'\n    expect: {decision: allow}\n"
    )
    runner = CliRunner()
    result = runner.invoke(main, ["policy", "validate", str(good), str(bad)])
    assert result.exit_code == 1
    assert f"{good}: ok (support@3, 1 rules, 1 tests)" in result.output
    assert f"{bad}:11: rules.input[0].action: must be one of" in result.output
    result = runner.invoke(main, ["policy", "test", str(good)])
    assert result.exit_code == 0, result.output
    assert "support@3: 1/1 tests passed" in result.output
    result = runner.invoke(main, ["policy", "test", str(failing)])
    assert result.exit_code == 1
    assert f"FAIL {failing}:13: test 'wrong on purpose': decision 'mask', expected 'allow'" in result.output


def test_the_shipped_default_policy_passes_its_own_tests() -> None:
    result = CliRunner().invoke(main, ["policy", "test", str(BUILTIN)])
    assert result.exit_code == 0, result.output
    assert "default@2: 8/8 tests passed" in result.output
