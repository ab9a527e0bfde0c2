"""Policies through a live Warden: masked prompts, restored answers (JSON and streamed), blocks,
per-request placeholders under concurrency, hot reload, the evaluate endpoint and the event row."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from proxy.upstreams.fake import FakeUpstream
from tests.support import LiveWarden, make_settings

ADMIN_TOKEN = "admin-token-for-policy-tests-0123"
OUTPUT_POLICY = """apiVersion: warden/v1
metadata: {{name: guarded, version: '{version}'}}
extends: default
scope: {{teams: [alpha]}}
rules:
  output:
    - {{id: codename, scanner: terms, action: block, params: {{words: [project falcon]}}}}
    - {{id: cards-out, scanner: pii, action: mask, params: {{entities: [CREDIT_CARD]}}}}
"""


@pytest.fixture
def live(tmp_path: Path, fake_upstream: FakeUpstream) -> Iterator[LiveWarden]:
    policy = tmp_path / "policies" / "guarded.yaml"
    policy.parent.mkdir()
    policy.write_text(OUTPUT_POLICY.format(version="1"))
    settings = make_settings(
        tmp_path,
        fake_upstream.base_url,
        auth={"admin_token": ADMIN_TOKEN},
        policies={"files": [str(policy.parent)], "reload_interval_s": 0},
    )
    warden = LiveWarden(settings)
    warden.policy_file = policy  # type: ignore[attr-defined]
    yield warden
    warden.stop()


def client(live: LiveWarden, team: str = "alpha") -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key=live.create_key(team), max_retries=0)


def last_upstream_text(fake: FakeUpstream) -> str:
    return fake.requests[-1][1]["messages"][-1]["content"]


def test_json_prompt_is_masked_upstream_and_restored_for_the_client(
    live: LiveWarden, fake_upstream: FakeUpstream
) -> None:
    prompt = "Reply to jane.roe@example.com or +1 415-555-0132 please"
    raw = client(live, "beta").chat.completions.with_raw_response.create(
        model="gpt-fake", messages=[{"role": "user", "content": prompt}]
    )
    answer = raw.parse()
    assert last_upstream_text(fake_upstream) == "Reply to <EMAIL_1> or <PHONE_1> please"
    assert answer.choices[0].message.content == prompt  # the echo, restored
    assert raw.headers["x-warden-policy"] == "default@2"
    assert raw.headers["x-warden-policy-decision"] == "mask"
    row = live.row_for(raw.headers["x-warden-request-id"])
    assert row["policy"] == "default@2" and row["decision"] == "mask"
    assert sorted(zip(row["finding_kind"], row["finding_action"], row["finding_count"], strict=True)) == [
        ("EMAIL_ADDRESS", "mask", 1),
        ("PHONE_NUMBER", "mask", 1),
    ]
    # The sealed transcript holds what the upstream saw: the placeholder, not the address.
    transcript = httpx.post(
        live.base_url.removesuffix("/v1") + f"/api/transcripts/{raw.headers['x-warden-request-id']}",
        json={"reason": "policy test: check masking"},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    ).json()
    stored = json.dumps(transcript)
    assert "<EMAIL_1>" in stored and "jane.roe@example.com" not in stored


def test_streamed_answer_is_restored_with_placeholders_split_across_events(
    live: LiveWarden, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.behaviour.chunks = 40  # a few characters per event: placeholders arrive in pieces
    prompt = "Contact ann@example.org and bob@example.net, card 4111 1111 1111 1111 ok " + "then more " * 8
    stream = client(live, "beta").chat.completions.create(
        model="gpt-fake", messages=[{"role": "user", "content": prompt}], stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces) == prompt
    assert not any("<" in p for p in pieces)
    sent = last_upstream_text(fake_upstream)
    assert sent.startswith("Contact <EMAIL_1> and <EMAIL_2>, card <CREDIT_CARD_1> ok")


def test_blocked_prompt_never_reaches_the_upstream(live: LiveWarden, fake_upstream: FakeUpstream) -> None:
    before = len(fake_upstream.requests)
    api = client(live, "beta")
    with pytest.raises(openai.BadRequestError) as caught:
        api.chat.completions.create(
            model="gpt-fake",
            messages=[{"role": "user", "content": "why does AKIAIOSFODNN7EXAMPLE fail?"}],
        )
    error = caught.value.body
    assert error["code"] == "content_policy_violation"
    assert "rule 'secrets' (secret:aws_access_key)" in error["message"]
    assert "AKIA" not in error["message"]
    assert len(fake_upstream.requests) == before
    row = live.row_for(caught.value.response.headers["x-warden-request-id"])
    assert (row["status"], row["decision"], row["error_class"]) == (400, "block", "content_policy_violation")
    assert list(row["finding_kind"]) == ["secret:aws_access_key"]


def test_request_level_rules_through_the_proxy(live: LiveWarden, fake_upstream: FakeUpstream) -> None:
    folder = live.policy_file.parent  # type: ignore[attr-defined]
    (folder / "gamma.yaml").write_text(
        "apiVersion: warden/v1\nmetadata: {name: gamma, version: '1'}\nscope: {teams: [gamma]}\n"
        "rules:\n  input:\n    - {id: size, scanner: max_input, action: block, params: {chars: 40}}\n"
    )
    api = client(live, "gamma")
    short = api.chat.completions.create(model="gpt-fake", messages=[{"role": "user", "content": "short"}])
    assert short.choices[0].message.content == "short"
    before = len(fake_upstream.requests)
    with pytest.raises(openai.BadRequestError, match=r"rule 'size' \(max_input:chars\)"):
        api.chat.completions.create(
            model="gpt-fake",
            messages=[{"role": "system", "content": "x" * 30}, {"role": "user", "content": "y" * 11}],
        )
    assert len(fake_upstream.requests) == before  # 41 characters over two messages: counted together


def test_output_block_json_and_stream(live: LiveWarden, fake_upstream: FakeUpstream) -> None:
    api = client(live, "alpha")  # team alpha gets the scoped policy with output rules
    said = "All good. The plan is project Falcon, says the memo."
    answer = api.chat.completions.create(model="gpt-fake", messages=[{"role": "user", "content": said}])
    assert answer.choices[0].finish_reason == "content_filter"
    assert answer.choices[0].message.content == ""
    fake_upstream.behaviour.chunks = 12
    stream = api.chat.completions.create(
        model="gpt-fake", messages=[{"role": "user", "content": "word " * 30 + said}], stream=True
    )
    chunks = list(stream)  # the SDK ends cleanly: [DONE] arrived
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "falcon" not in text.lower() and text.startswith("word word")
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    rows = live.rows_dicts(
        "SELECT decision, finish_reason, streamed FROM requests WHERE team = 'alpha' ORDER BY ts"
    )
    assert [(r["decision"], r["finish_reason"], r["streamed"]) for r in rows] == [
        ("block", "content_filter", False),
        ("block", "content_filter", True),
    ]


def test_output_masks_new_values_but_restores_the_prompts_own(live: LiveWarden) -> None:
    said = "Mine is ann@example.org, card 5555 5555 5555 4444."
    answer = client(live, "alpha").chat.completions.create(
        model="gpt-fake", messages=[{"role": "user", "content": said}]
    )
    # The prompt's own e-mail comes back; the card was masked on input and again on output.
    assert answer.choices[0].message.content == "Mine is ann@example.org, card 5555 5555 5555 4444."


def test_concurrent_requests_never_see_each_others_values(live: LiveWarden) -> None:
    api = client(live, "beta")
    barrier = threading.Barrier(32)

    def ask(i: int) -> tuple[int, str]:
        barrier.wait(10)
        content = f"user{i}@example.com writes: ticket {i}"
        reply = api.chat.completions.create(model="gpt-fake", messages=[{"role": "user", "content": content}])
        return i, reply.choices[0].message.content or ""

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(ask, range(32)))
    for i, text in results:
        assert text == f"user{i}@example.com writes: ticket {i}"


def test_hot_reload_and_a_broken_file_keeps_the_previous_policy(live: LiveWarden) -> None:
    api = client(live, "alpha")

    def version() -> str:
        raw = api.chat.completions.with_raw_response.create(
            model="gpt-fake", messages=[{"role": "user", "content": "hi"}]
        )
        return raw.headers["x-warden-policy"]

    assert version() == "guarded@1"
    live.policy_file.write_text(OUTPUT_POLICY.format(version="2"))  # type: ignore[attr-defined]
    assert version() == "guarded@2"
    live.policy_file.write_text(OUTPUT_POLICY.format(version="3").replace("action: block", "action: zap"))  # type: ignore[attr-defined]
    assert version() == "guarded@2"
    metrics = httpx.get(live.base_url.removesuffix("/v1") + "/metrics").text
    assert "warden_policy_reload_failures_total 1.0" in metrics
    listing = httpx.get(
        live.base_url.removesuffix("/v1") + "/api/policies",
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    ).json()
    assert "rules.output[0].action: must be one of" in listing["last_error"]
    assert [p["name"] for p in listing["policies"]] == ["default", "guarded"]


def test_evaluate_endpoint(live: LiveWarden) -> None:
    root = live.base_url.removesuffix("/v1")
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    result = httpx.post(
        f"{root}/v1/warden/evaluate", json={"text": "mail a@b.io", "team": "beta"}, headers=headers
    ).json()
    assert (result["policy"], result["decision"], result["text"]) == ("default@2", "mask", "mail <EMAIL_1>")
    out = httpx.post(
        f"{root}/v1/warden/evaluate",
        json={"text": "see project falcon", "stage": "output", "policy": "guarded"},
        headers=headers,
    ).json()
    assert (out["decision"], out["blocked_by"]) == ("block", "codename")
    bad = httpx.post(f"{root}/v1/warden/evaluate", json={"text": 5}, headers=headers)
    assert bad.status_code == 400
    assert httpx.post(f"{root}/v1/warden/evaluate", json={"text": "x"}).status_code == 401
    api_key = live.create_key("beta")
    as_caller = httpx.post(
        f"{root}/v1/warden/evaluate", json={"text": "x"}, headers={"authorization": f"Bearer {api_key}"}
    )
    assert as_caller.status_code == 401  # an API key calls models; evaluating policies is for people


def test_policies_of_other_tenants_are_neither_listed_nor_run(live: LiveWarden) -> None:
    live.policy_file.with_name("theirs.yaml").write_text(  # type: ignore[attr-defined]
        "apiVersion: warden/v1\nmetadata: {name: theirs, version: '1'}\nscope: {tenants: [other]}\n"
        "rules:\n  input:\n    - {id: t, scanner: terms, action: block, params: {words: [secret]}}\n"
    )
    root = live.base_url.removesuffix("/v1")
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    listing = httpx.get(root + "/api/policies", headers=headers).json()
    assert [p["name"] for p in listing["policies"]] == ["default", "guarded"]
    # Where the deployment keeps its files is not shown: the file's name only.
    assert [p["source"] for p in listing["policies"]][1] == "guarded.yaml"
    named = httpx.post(root + "/v1/warden/evaluate", json={"text": "x", "policy": "theirs"}, headers=headers)
    assert named.status_code == 404
    assert (
        httpx.post(
            root + "/v1/warden/evaluate", json={"text": "x", "policy": "guarded"}, headers=headers
        ).status_code
        == 200
    )


def test_a_repeated_history_is_remembered_clean_but_a_new_turn_is_always_scanned(
    live: LiveWarden, fake_upstream: FakeUpstream
) -> None:
    # Each turn resends the system prompt and the history: the clean ones are remembered, and the same
    # e-mail in a new turn is masked every time, also right after an identical clean text was seen.
    api = client(live, "beta")
    history = [{"role": "system", "content": "You are a helpful assistant."}]
    for turn in range(3):
        history.append({"role": "user", "content": f"Turn {turn}: write to jane.roe@example.com"})
        reply = api.chat.completions.create(model="gpt-fake", messages=history)  # type: ignore[arg-type]
        sent = fake_upstream.requests[-1][1]["messages"]
        assert sent[0]["content"] == "You are a helpful assistant."
        assert [m["content"] for m in sent[1:] if m["role"] == "user"] == [
            f"Turn {t}: write to <EMAIL_1>" for t in range(turn + 1)
        ]
        history.append({"role": "assistant", "content": reply.choices[0].message.content or ""})
