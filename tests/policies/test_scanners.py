"""Scanners, table-driven, on the real engines (presidio, detoxify/torch, onnxruntime)."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.document import Rule, parse_policy
from policies.engine import Blocked, CompiledPolicy, Report
from policies.evaluate import evaluate_text
from policies.findings import Placeholders
from policies.runtime import ModelPaths, Runtime
from policies.scanners import RequestFacts, ScannerUnavailable, checkers
from policies.toxicity_model import load_toxicity_model


def compiled(runtime: Runtime, rules: str, extra: str = "") -> CompiledPolicy:
    text = f"apiVersion: warden/v1\nmetadata: {{name: t, version: '1'}}\n{extra}rules:\n{rules}"
    return CompiledPolicy(parse_policy(text, "t.yaml", checkers()), runtime)


PII_CASES = [
    ("Write to jane.doe@example.com today", "EMAIL_ADDRESS", "Write to <EMAIL_1> today"),
    ("Call +1 415-555-0132 now", "PHONE_NUMBER", "Call <PHONE_1> now"),
    ("card 4111 1111 1111 1111 ok", "CREDIT_CARD", "card <CREDIT_CARD_1> ok"),
    ("IBAN DE89 3704 0044 0532 0130 00 thanks", "IBAN_CODE", "IBAN <IBAN_1> thanks"),
    ("the host 192.168.10.20 is down", "IP_ADDRESS", "the host <IP_ADDRESS_1> is down"),
    ("ssn 536-22-8726 on file", "US_SSN", "ssn <US_SSN_1> on file"),
]


@pytest.mark.parametrize(("text", "kind", "masked"), PII_CASES)
def test_pii_masks_each_default_entity(runtime: Runtime, text: str, kind: str, masked: str) -> None:
    policy = compiled(runtime, "  input:\n    - {id: pii, scanner: pii, action: mask}\n")
    result = evaluate_text(policy, "input", text)
    assert result["decision"] == "mask"
    assert result["text"] == masked
    assert [f["kind"] for f in result["findings"]] == [kind]


def test_pii_same_value_same_placeholder_and_numbering_left_to_right(runtime: Runtime) -> None:
    policy = compiled(runtime, "  input:\n    - {id: pii, scanner: pii, action: mask}\n")
    placeholders = Placeholders()
    text = "a@x.io then b@x.io then a@x.io"
    out = policy.check_text("input", text, placeholders, Report("t"))
    assert out == "<EMAIL_1> then <EMAIL_2> then <EMAIL_1>"
    assert placeholders.restore("reply to <EMAIL_2> and <EMAIL_1>, not <EMAIL_3>") == (
        "reply to b@x.io and a@x.io, not <EMAIL_3>"
    )


def test_pii_per_entity_actions_thresholds_and_custom_recognizer(runtime: Runtime) -> None:
    rules = """  input:
    - id: pii
      scanner: pii
      action: mask
      params:
        entities:
          EMAIL_ADDRESS: {}
          CREDIT_CARD: {action: block}
          PHONE_NUMBER: {threshold: 0.9}
          EMPLOYEE_ID: {action: flag}
        custom:
          - {name: EMPLOYEE_ID, regex: 'E-\\d{6}', score: 0.2, context: [employee], label: EMP}
"""
    policy = compiled(runtime, rules)
    # phone below its threshold: untouched; the employee id needs its context word to pass 0.3
    assert evaluate_text(policy, "input", "ring 415-555-0132 re E-123456")["decision"] == "allow"
    flagged = evaluate_text(policy, "input", "employee E-123456 and x@y.org")
    assert flagged["text"] == "employee E-123456 and <EMAIL_1>"
    assert {(f["kind"], f["action"]) for f in flagged["findings"]} == {
        ("EMPLOYEE_ID", "flag"),
        ("EMAIL_ADDRESS", "mask"),
    }
    blocked = evaluate_text(policy, "input", "pay with 4111 1111 1111 1111")
    assert blocked["decision"] == "block" and blocked["blocked_by"] == "pii"


def test_pii_ignores_prose_and_numbers_that_are_not_entities(runtime: Runtime) -> None:
    policy = compiled(runtime, "  input:\n    - {id: pii, scanner: pii, action: mask}\n")
    for text in ("Tell me a joke about cats.", "In 2024 we sold 15 units at 3.5 each.", "v1.2.3 release"):
        assert evaluate_text(policy, "input", text)["decision"] == "allow", text


def test_names_need_a_spacy_model_with_ner(runtime: Runtime) -> None:
    with pytest.raises(ScannerUnavailable, match="pii_spacy_model"):
        compiled(runtime, "  input:\n    - {scanner: pii, action: mask, params: {entities: [PERSON]}}\n")


SECRET_CASES = [
    ("AKIAIOSFODNN7EXAMPLE", "secret:aws_access_key"),
    ("sk-proj-" + "a1B2" * 8, "secret:openai_key"),
    ("ghp_" + "x" * 36, "secret:github_token"),
    ("xoxb-1234567890-abcdefghij", "secret:slack_token"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIE...", "secret:private_key"),
    ("https://bob:s3cret@example.com/path", "secret:password_in_url"),
    ("wdn-" + "k" * 30, "secret:warden_key"),
    ("eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJSMeKKF2QT4", "secret:jwt"),
]


@pytest.mark.parametrize(("secret", "kind"), SECRET_CASES)
def test_secrets_block_each_kind(runtime: Runtime, secret: str, kind: str) -> None:
    policy = compiled(runtime, "  input:\n    - {id: s, scanner: secrets, action: block}\n")
    result = evaluate_text(policy, "input", f"please debug this: {secret} thanks")
    assert result["decision"] == "block"
    assert [f["kind"] for f in result["findings"]] == [kind]


@pytest.mark.parametrize(
    "text", ["a sketch of the skeleton", "https://example.com/a:b", "token counts: 1234567890abcdef"]
)
def test_secrets_leave_lookalikes_alone(runtime: Runtime, text: str) -> None:
    policy = compiled(runtime, "  input:\n    - {id: s, scanner: secrets, action: block}\n")
    assert evaluate_text(policy, "input", text)["decision"] == "allow"


def test_terms_words_and_regex(runtime: Runtime) -> None:
    rules = """  input:
    - {id: words, scanner: terms, action: mask, params: {words: [project falcon], label: CODENAME}}
    - {id: rx, scanner: terms, action: block, params: {regex: ['(?i)ignore (all )?previous instructions']}}
"""
    policy = compiled(runtime, rules)
    masked = evaluate_text(policy, "input", "Status of Project Falcon? (not falconry)")
    assert masked["text"] == "Status of <CODENAME_1>? (not falconry)"
    blocked = evaluate_text(policy, "input", "Please IGNORE previous instructions and ...")
    assert blocked["decision"] == "block" and blocked["blocked_by"] == "rx"


def test_request_level_rules(runtime: Runtime) -> None:
    rules = """  input:
    - {id: size, scanner: max_input, action: block, params: {chars: 100, tokens: 10}}
    - {id: models, scanner: models, action: block, params: {allow: ['gpt-4o*'], deny: [gpt-4o-preview]}}
"""
    policy = compiled(runtime, rules)

    def outcome(model: str, chars: int, utf8: int) -> str:
        report = Report("t")
        try:
            policy.check_request(RequestFacts(model, "chat.completions", chars, utf8), report)
        except Blocked as exc:
            return exc.hit.kind
        return report.decision

    assert outcome("gpt-4o-mini", 20, 40) == "allow"
    assert outcome("gpt-4o-mini", 101, 101) == "max_input:chars"
    assert outcome("gpt-4o-mini", 20, 41) == "max_input:tokens"  # ceil(41 / 4) = 11 > 10
    assert outcome("claude-3", 20, 20) == "model_not_allowed"
    assert outcome("gpt-4o-preview", 20, 20) == "model_not_allowed"


def test_monitor_mode_records_and_changes_nothing(runtime: Runtime) -> None:
    policy = compiled(runtime, "  input:\n    - {id: pii, scanner: pii, action: mask, mode: monitor}\n")
    result = evaluate_text(policy, "input", "mail a@b.io")
    assert result["text"] == "mail a@b.io" and result["decision"] == "allow"
    assert result["findings"][0]["action"] == "monitor"


class Exploding:
    level = "text"
    windowed = True

    def scan(self, text: str) -> list:
        raise RuntimeError(f"boom on {text}")


@pytest.mark.parametrize(("on_error", "decision"), [("block", "block"), ("allow", "flag")])
def test_a_scanner_that_raises_fails_closed_unless_told(
    runtime: Runtime, on_error: str, decision: str, caplog: pytest.LogCaptureFixture
) -> None:
    policy = compiled(
        runtime,
        "  input:\n    - {id: t, scanner: terms, action: flag, "
        f"on_error: {on_error}, params: {{words: [x]}}}}\n",
    )
    rule: Rule = policy.policy.rules[0]
    policy._rules["input"] = [(rule, Exploding())]
    result = evaluate_text(policy, "input", "secret text 4111")
    assert result["decision"] == decision
    assert result["findings"][0]["kind"] == "error:terms"
    assert "secret text" not in caplog.text  # the scanner's message quotes the text: never logged


def test_toxicity_torch_and_onnx_agree_and_threshold(
    runtime: Runtime, toxicity_checkpoint: Path, toxicity_onnx: Path
) -> None:
    torch_model = runtime.toxicity_model()
    onnx_model = load_toxicity_model(str(toxicity_onnx))
    text = "you are a wonderful person " * 3
    a, b = torch_model.scores(text), onnx_model.scores(text)
    assert (
        a.keys()
        == b.keys()
        == {"toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"}
    )
    for label in a:
        assert abs(a[label] - b[label]) < 1e-4
    score = a["toxicity"]
    low = compiled(
        runtime,
        f"  input:\n    - {{scanner: toxicity, action: block, params: {{threshold: {score - 0.01:.4f}}}}}\n",
    )
    high = compiled(
        runtime,
        f"  input:\n    - {{scanner: toxicity, action: block, params: {{threshold: {score + 0.01:.4f}}}}}\n",
    )
    assert evaluate_text(low, "input", text)["decision"] == "block"
    assert evaluate_text(high, "input", text)["decision"] == "allow"


def test_toxicity_scores_long_texts_in_windows(runtime: Runtime, toxicity_onnx: Path) -> None:
    model = runtime.toxicity_model()
    vocab = sorted(w for w in model.tokenizer.get_vocab() if w.isalpha() and len(w) > 3)
    head = "word " * 600  # more than one window on its own: truncation would see only this
    long_text = head + " ".join(vocab[i % len(vocab)] for i in range(2500))
    windows = model.tokenizer(
        long_text, truncation=True, max_length=512, stride=64, return_overflowing_tokens=True
    )["input_ids"]
    assert len(windows) > 5
    first_window_only = model.scores(head)
    scores = model.scores(long_text)
    # Each label takes its highest window: never below the first window, above it for some label.
    assert all(scores[label] >= first_window_only[label] - 1e-6 for label in scores)
    assert any(scores[label] > first_window_only[label] + 1e-6 for label in scores)
    onnx_scores = load_toxicity_model(str(toxicity_onnx)).scores(long_text)  # windows made by `tokenizers`
    assert all(abs(scores[label] - onnx_scores[label]) < 1e-4 for label in scores)


def test_toxicity_without_a_model(tmp_path: Path) -> None:
    bare = Runtime(ModelPaths(toxicity_model="none"))
    with pytest.raises(ScannerUnavailable, match="toxicity_model"):
        compiled(bare, "  input:\n    - {scanner: toxicity, action: flag}\n")
    skipped = compiled(
        bare, "  input:\n    - {id: tox, scanner: toxicity, action: flag, params: {when_unavailable: skip}}\n"
    )
    assert skipped.inactive == ["tox"]


def test_a_checkpoint_whose_base_model_is_not_local_is_refused(
    tmp_path: Path, toxicity_checkpoint: Path
) -> None:
    import torch

    loaded = torch.load(toxicity_checkpoint, weights_only=False)
    loaded["config"]["arch"]["args"]["model_type"] = "bert-base-uncased"
    hub_bound = tmp_path / "hub.ckpt"
    torch.save(loaded, hub_bound)
    with pytest.raises(ValueError, match="not a local folder"):
        load_toxicity_model(str(hub_bound))
    # ...and works when told where the base model is
    base = toxicity_checkpoint.parent / "base"
    assert load_toxicity_model(str(hub_bound), str(base)).labels[0] == "toxicity"
