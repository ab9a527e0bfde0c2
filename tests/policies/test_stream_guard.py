"""StreamGuard: for any split of an answer into deltas, the stream equals the non-streamed answer."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.document import parse_policy
from policies.engine import Blocked, CompiledPolicy, Report
from policies.findings import Placeholders
from policies.runtime import Runtime
from policies.scanners import checkers
from policies.stream_guard import StreamGuard

POLICY = """apiVersion: warden/v1
metadata: {name: stream, version: '1'}
rules:
  input:
    - {id: pii-in, scanner: pii, action: mask}
  output:
    - {id: pii-out, scanner: pii, action: mask, params: {entities: [EMAIL_ADDRESS, CREDIT_CARD, IP_ADDRESS]}}
    - {id: codename, scanner: terms, action: block, params: {words: [project falcon]}}
"""
PROMPT = "I am ann@example.org, phone +1 415 555 0132."
WORDS = [
    "hello", "world", "the", "answer", "is", "<EMAIL_1>", "<PHONE_1>", "<EMAIL_9>", "bob@corp.io",
    "4111 1111 1111 1111", "10.0.0.1", "é", "数据", "🙂", ",", ".", "\n", "a<b", "x>y", "<",
]  # fmt: skip
PARTIAL_START = re.compile(r"<[A-Z][A-Z0-9_]*$")
PARTIAL_END = re.compile(r"^[A-Z0-9_]*_\d+>")


@pytest.fixture(scope="module")
def policy(runtime: Runtime) -> CompiledPolicy:
    return CompiledPolicy(parse_policy(POLICY, "stream.yaml", checkers()), runtime)


def seeded(policy: CompiledPolicy) -> Placeholders:
    placeholders = Placeholders()
    assert policy.check_text("input", PROMPT, placeholders, Report("t")) == "I am <EMAIL_1>, phone <PHONE_1>."
    return placeholders


def whole(policy: CompiledPolicy, text: str) -> str:
    placeholders = seeded(policy)
    return placeholders.restore(policy.check_text("output", text, placeholders, Report("t")))


def streamed(policy: CompiledPolicy, deltas: list[str], holdback: int = 48) -> list[str]:
    guard = StreamGuard(policy, seeded(policy), Report("t"), restore=True, holdback=holdback)
    pieces = [guard.feed(d) for d in deltas]
    pieces.append(guard.finish())
    return [p for p in pieces if p]


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


@settings(
    max_examples=int(os.environ.get("WARDEN_HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=60),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40),
    holdback=st.sampled_from([32, 48, 96]),
)
def test_any_split_streams_the_same_as_the_whole(
    policy: CompiledPolicy, words: list[str], cuts: list[int], holdback: int
) -> None:
    text = " ".join(words)
    pieces = streamed(policy, split(text, cuts), holdback)
    assert "".join(pieces) == whole(policy, text)
    for piece in pieces:  # no placeholder is ever emitted in halves
        assert not PARTIAL_START.search(piece), piece
        assert not PARTIAL_END.match(piece), piece


def test_one_character_deltas_hold_back_only_a_window(policy: CompiledPolicy) -> None:
    text = "word " * 200 + "mail <EMAIL_1> now"
    guard = StreamGuard(policy, seeded(policy), Report("t"), restore=True, holdback=48)
    sent = 0
    for index, char in enumerate(text):
        sent += len(guard.feed(char))
        assert index + 1 - sent <= 48 + 16 + 5  # hold-back + scan step + one word
    assert guard.finish().endswith("mail ann@example.org now")


def test_a_blocked_term_stops_before_it_is_sent(policy: CompiledPolicy) -> None:
    report = Report("t")
    guard = StreamGuard(policy, seeded(policy), report, restore=True, holdback=48)
    sent = []
    with pytest.raises(Blocked) as caught:
        for delta in ["All fine so far. " * 4, "Then proj", "ect fal", "con leaks. ", "more " * 20]:
            sent.append(guard.feed(delta))
        guard.finish()
    assert caught.value.hit.rule == "codename"
    assert "falcon" not in "".join(sent).lower() and "All fine so far." in "".join(sent)
    assert report.decision == "block"
