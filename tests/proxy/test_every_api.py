"""Every API a client speaks, through a live Warden, with the official SDKs: the Responses API and
Anthropic's Messages API natively and translated, tool calls governed both ways, logprobs never
carrying what the rules changed, and the fields that used to pass unscanned."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from proxy.upstreams.fake import FakeUpstream
from tests.support import LiveWarden, make_settings

EMAIL = "jane.roe@example.com"
CARD = "4111 1111 1111 1111"
POLICY = """apiVersion: warden/v1
metadata: {name: guarded, version: '1'}
extends: default
scope: {teams: [alpha]}
rules:
  input:
    # Cards reach the upstream here, so that the output rule below is what catches them in answers.
    - {id: pii, scanner: pii, action: mask, params: {entities: [EMAIL_ADDRESS]}}
  output:
    - {id: codename, scanner: terms, action: block, params: {words: [project falcon]}}
    - {id: cards-out, scanner: pii, action: mask, params: {entities: [CREDIT_CARD]}}
"""


@pytest.fixture
def live(tmp_path: Path, fake_upstream: FakeUpstream) -> Iterator[LiveWarden]:
    policy = tmp_path / "policies" / "guarded.yaml"
    policy.parent.mkdir()
    policy.write_text(POLICY)
    upstreams = [
        {
            "name": "fake",
            "type": "openai",
            "base_url": fake_upstream.base_url,
            "api_key": "sk-upstream-secret",
            "models": ["gpt-fake", "fake-tools", "fake-500"],
            "retries": 0,
        },
        {
            "name": "claude",
            "type": "anthropic",
            "base_url": fake_upstream.base_url,
            "api_key": "sk-ant-upstream-secret",
            "models": ["claude-fake", "claude-tools"],
            "retries": 0,
        },
        {
            "name": "chatonly",
            "type": "openai",
            "apis": ["chat.completions"],
            "base_url": fake_upstream.base_url,
            "models": ["chat-only", "chat-only-tools"],
            "retries": 0,
        },
    ]
    settings = make_settings(
        tmp_path,
        None,
        upstreams=upstreams,
        policies={"files": [str(policy.parent)], "reload_interval_s": 0},
    )
    warden = LiveWarden(settings)
    yield warden
    warden.stop()


def oai(live: LiveWarden, team: str = "alpha") -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key=live.create_key(team), max_retries=0)


def claude(live: LiveWarden, team: str = "alpha") -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=live.base_url.removesuffix("/v1"), api_key=live.create_key(team), max_retries=0
    )


def sent(fake: FakeUpstream) -> tuple[str, dict[str, Any], dict[str, str]]:
    return fake.requests[-1]


def upstream_text(fake: FakeUpstream) -> str:
    return json.dumps(sent(fake)[1])


TOOL = {
    "type": "function",
    "name": "send_mail",
    "description": "Send an e-mail",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}
CHAT_TOOL = {"type": "function", "function": {k: v for k, v in TOOL.items() if k != "type"}}
CLAUDE_TOOL = {"name": "send_mail", "description": "Send an e-mail", "input_schema": TOOL["parameters"]}


# -- OpenAI Responses API ------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt-fake", "chat-only"])
def test_responses_json_masks_upstream_and_restores_for_the_client(
    live: LiveWarden, fake_upstream: FakeUpstream, model: str
) -> None:
    raw = oai(live).responses.with_raw_response.create(
        model=model, instructions="Be brief.", input=f"write to {EMAIL}"
    )
    response = raw.parse()
    assert response.output_text == f"write to {EMAIL}"
    path, _, _ = sent(fake_upstream)
    assert EMAIL not in upstream_text(fake_upstream) and "<EMAIL_1>" in upstream_text(fake_upstream)
    # Native where the upstream speaks the Responses API, translated to chat completions where not.
    assert path == ("/v1/responses" if model == "gpt-fake" else "/v1/chat/completions")
    row = live.row_for(raw.headers["x-warden-request-id"])
    assert (row["route"], row["model"], row["status"], row["decision"]) == ("responses", model, 200, "mask")
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0 and row["finish_reason"] == "stop"


@pytest.mark.parametrize("model", ["gpt-fake", "chat-only"])
def test_responses_stream_is_restored_in_every_event(
    live: LiveWarden, fake_upstream: FakeUpstream, model: str
) -> None:
    deltas, done_texts, final = [], [], None
    with oai(live).responses.stream(model=model, input=f"mail {EMAIL} today please") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            elif event.type == "response.output_text.done":
                done_texts.append(event.text)
        final = stream.get_final_response()
    expected = f"mail {EMAIL} today please"
    assert "".join(deltas) == expected and done_texts == [expected]
    assert final.output_text == expected and final.usage is not None and final.usage.output_tokens > 0
    assert EMAIL not in upstream_text(fake_upstream)


@pytest.mark.parametrize("model", ["fake-tools", "chat-only-tools"])
@pytest.mark.parametrize("stream", [False, True])
def test_responses_agent_round_trip_keeps_addresses_away_from_the_upstream(
    live: LiveWarden, fake_upstream: FakeUpstream, model: str, stream: bool
) -> None:
    client = oai(live)
    question = f"please mail {EMAIL}"
    if stream:
        with client.responses.stream(model=model, input=question, tools=[TOOL]) as events:
            first = events.get_final_response()
    else:
        first = client.responses.create(model=model, input=question, tools=[TOOL])
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert json.loads(call.arguments) == {"text": question}, "the client gets the real address back"
    assert EMAIL not in upstream_text(fake_upstream)
    follow_up = [
        {"role": "user", "content": question},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": f"sent to {EMAIL}"},
    ]
    client.responses.create(model=model, input=follow_up, tools=[TOOL])
    seen = upstream_text(fake_upstream)
    assert EMAIL not in seen and seen.count("<EMAIL_1>") >= 3


def test_responses_previous_response_id_is_refused_by_default(live: LiveWarden) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        oai(live).responses.create(model="gpt-fake", input="go on", previous_response_id="resp_123")
    assert refused.value.code == "upstream_context_refused"


def test_responses_blocked_answer_carries_nothing(live: LiveWarden) -> None:
    response = oai(live).responses.create(model="gpt-fake", input="tell me about project falcon")
    assert response.status == "incomplete" and response.incomplete_details.reason == "content_filter"
    assert "falcon" not in response.model_dump_json(warnings=False)


def test_responses_logprobs_are_dropped_when_the_text_changed(live: LiveWarden) -> None:
    body = oai(live).responses.create(
        model="gpt-fake", input=f"card {CARD} ok", include=["message.output_text.logprobs"]
    )
    part = body.output[0].content[0]
    assert "<CREDIT_CARD_" in part.text and "4111" not in body.model_dump_json(warnings=False)
    chunks = []
    with oai(live).responses.stream(
        model="gpt-fake", input=f"card {CARD} ok", include=["message.output_text.logprobs"]
    ) as stream:
        for event in stream:
            chunks.append(event.model_dump_json(warnings=False))
    assert chunks and not any("4111" in c for c in chunks)


# -- Anthropic Messages API ----------------------------------------------------------------------


@pytest.mark.parametrize("model", ["claude-fake", "chat-only"])
def test_messages_json_with_the_anthropic_sdk(
    live: LiveWarden, fake_upstream: FakeUpstream, model: str
) -> None:
    raw = claude(live).messages.with_raw_response.create(
        extra_headers={"anthropic-beta": "fake-feature-2025-01-01"},
        model=model,
        max_tokens=64,
        system=f"Answer {EMAIL}",
        messages=[{"role": "user", "content": f"hello {EMAIL}"}],
    )
    message = raw.parse()
    assert message.content[0].text == f"hello {EMAIL}" and message.stop_reason == "end_turn"
    path, _, headers = sent(fake_upstream)
    assert EMAIL not in upstream_text(fake_upstream)
    if model == "claude-fake":
        assert path == "/v1/messages" and headers["x-api-key"] == "sk-ant-upstream-secret"
        assert "authorization" not in headers
        assert headers["anthropic-beta"] == "fake-feature-2025-01-01", "beta opt-ins reach the provider"
    else:
        assert path == "/v1/chat/completions"
    row = live.row_for(raw.headers["x-warden-request-id"])
    assert (row["route"], row["status"], row["finish_reason"]) == ("messages", 200, "stop")
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0


def test_a_beta_header_that_is_not_ascii_is_refused(live: LiveWarden, fake_upstream: FakeUpstream) -> None:
    """Found by the fuzzer: `anthropic-beta: été` went on to httpx, which raised UnicodeEncodeError
    (a 500)."""
    before = len(fake_upstream.requests)
    response = httpx.post(
        live.base_url + "/messages",
        headers={"x-api-key": live.create_key(), "anthropic-beta": b"\xe9t\xe9"},
        json={"model": "claude-fake", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "'anthropic-beta'" in error["message"]
    assert len(fake_upstream.requests) == before


@pytest.mark.parametrize(("model", "status"), [("claude-fake", 200), ("chat-only", 400)])
def test_a_stream_options_of_any_type_on_the_messages_api_is_not_a_crash(
    live: LiveWarden, model: str, status: int
) -> None:
    """Found by the fuzzer: OpenAI's `stream_options` is not a Messages API field, so nothing validated
    it there, and the planning read `"stream_options": 2` as an object (an AttributeError, a 500)."""
    response = httpx.post(
        live.base_url + "/messages",
        headers={"x-api-key": live.create_key()},
        json={
            "model": model,
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "hi"}],
            "stream_options": 2,
        },
        timeout=10,
    )
    assert response.status_code == status, response.text
    if status == 400:  # a field the translation to chat completions does not know
        assert "stream_options" in response.json()["error"]["message"]


@pytest.mark.parametrize("model", ["claude-fake", "chat-only"])
def test_messages_stream_with_the_anthropic_sdk(
    live: LiveWarden, fake_upstream: FakeUpstream, model: str
) -> None:
    with claude(live).messages.stream(
        model=model, max_tokens=64, messages=[{"role": "user", "content": f"mail {EMAIL} now ok"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == f"mail {EMAIL} now ok" and final.content[0].text == text
    assert final.usage.output_tokens > 0
    assert EMAIL not in upstream_text(fake_upstream)


@pytest.mark.parametrize("model", ["claude-tools", "chat-only-tools"])
@pytest.mark.parametrize("stream", [False, True])
def test_messages_tool_use_round_trip(
    live: LiveWarden, fake_upstream: FakeUpstream, model: str, stream: bool
) -> None:
    client = claude(live)
    question = [{"role": "user", "content": f"please mail {EMAIL}"}]
    if stream:
        with client.messages.stream(model=model, max_tokens=64, messages=question, tools=[CLAUDE_TOOL]) as s:
            first = s.get_final_message()
    else:
        first = client.messages.create(model=model, max_tokens=64, messages=question, tools=[CLAUDE_TOOL])
    (use,) = [block for block in first.content if block.type == "tool_use"]
    assert use.input == {"text": f"please mail {EMAIL}"} and first.stop_reason == "tool_use"
    assert EMAIL not in upstream_text(fake_upstream)
    history = [
        *question,
        {"role": "assistant", "content": [use.model_dump()]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": f"ok {EMAIL}"}],
        },
    ]
    client.messages.create(model=model, max_tokens=64, messages=history, tools=[CLAUDE_TOOL])
    seen = upstream_text(fake_upstream)
    assert EMAIL not in seen and seen.count("<EMAIL_1>") >= 3


def test_messages_errors_are_in_anthropic_shape(live: LiveWarden) -> None:
    client = claude(live)
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="claude-fake", max_tokens=0, messages=[{"role": "user", "content": "x"}])
    assert bad.value.body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in bad.value.body["error"]["message"]
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(
            base_url=live.base_url.removesuffix("/v1"), api_key="wk-nope", max_retries=0
        ).messages.create(model="claude-fake", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError) as blocked:
        client.messages.create(
            model="claude-fake",
            max_tokens=5,
            messages=[{"role": "user", "content": "key AKIAIOSFODNN7EXAMPLE"}],
        )
    assert "content_policy_violation" in blocked.value.body["error"]["message"]


def test_count_tokens_goes_to_an_anthropic_upstream_only(live: LiveWarden) -> None:
    client = claude(live)
    counted = client.messages.count_tokens(
        model="claude-fake", messages=[{"role": "user", "content": "a b c"}]
    )
    assert counted.input_tokens > 0
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.count_tokens(model="chat-only", messages=[{"role": "user", "content": "a b c"}])
    assert "unsupported_api" in refused.value.body["error"]["message"]


# -- chat completions: tool calls, logprobs and the fields that used to pass unscanned ----------------


@pytest.mark.parametrize("model", ["fake-tools", "claude-tools"])
@pytest.mark.parametrize("stream", [False, True])
def test_chat_tool_call_arguments_are_restored_and_history_masked(
    live: LiveWarden, fake_upstream: FakeUpstream, model: str, stream: bool
) -> None:
    client = oai(live)
    question = {"role": "user", "content": f'mail "{EMAIL}" now'}
    if stream:
        calls: dict[int, str] = {}
        for chunk in client.chat.completions.create(
            model=model, messages=[question], tools=[CHAT_TOOL], stream=True
        ):
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or ():
                    calls[call.index] = calls.get(call.index, "") + (call.function.arguments or "")
        arguments = calls[0]
    else:
        answer = client.chat.completions.create(model=model, messages=[question], tools=[CHAT_TOOL])
        arguments = answer.choices[0].message.tool_calls[0].function.arguments
    assert json.loads(arguments) == {"text": question["content"]}, "valid JSON with the real value back"
    assert EMAIL not in upstream_text(fake_upstream)
    history = [
        question,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "send_mail", "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": f"sent to {EMAIL}"},
    ]
    client.chat.completions.create(model=model, messages=history, tools=[CHAT_TOOL])
    assert EMAIL not in upstream_text(fake_upstream)


def test_chat_fields_that_used_to_pass_unscanned(live: LiveWarden, fake_upstream: FakeUpstream) -> None:
    client = oai(live)
    client.chat.completions.create(
        model="gpt-fake",
        messages=[{"role": "user", "content": "hi", "name": EMAIL}],
        tools=[
            {"type": "function", "function": {"name": "f", "description": f"cc {EMAIL}", "parameters": {}}}
        ],
        extra_body={"prediction": {"type": "content", "content": f"to {EMAIL}"}},
    )
    assert EMAIL not in upstream_text(fake_upstream)
    before = len(fake_upstream.requests)
    schema = {"type": "object", "description": "key AKIAIOSFODNN7EXAMPLE", "properties": {}}
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="gpt-fake",
            messages=[{"role": "user", "content": "hi"}],
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        )
    assert len(fake_upstream.requests) == before, "a credential in a schema never reaches the upstream"


@pytest.mark.parametrize("stream", [False, True])
def test_chat_logprobs_never_carry_a_masked_value(live: LiveWarden, stream: bool) -> None:
    client = oai(live)
    prompt = f"card {CARD} is it"
    if stream:
        dumped = [
            c.model_dump_json(warnings=False)
            for c in client.chat.completions.create(
                model="gpt-fake", messages=[{"role": "user", "content": prompt}], logprobs=True, stream=True
            )
        ]
        text = "".join(
            json.loads(c)["choices"][0]["delta"].get("content") or ""
            for c in dumped
            if json.loads(c)["choices"]
        )
    else:
        answer = client.chat.completions.create(
            model="gpt-fake", messages=[{"role": "user", "content": prompt}], logprobs=True
        )
        dumped = [answer.model_dump_json(warnings=False)]
        text = answer.choices[0].message.content or ""
    assert "<CREDIT_CARD_" in text
    assert not any("4111" in d for d in dumped)


def test_chat_block_in_tool_arguments(live: LiveWarden) -> None:
    answer = oai(live).chat.completions.create(
        model="fake-tools", messages=[{"role": "user", "content": "project falcon"}], tools=[CHAT_TOOL]
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "content_filter" and not choice.message.tool_calls
    assert "falcon" not in answer.model_dump_json(warnings=False)


# -- models and unknown endpoints ----------------------------------------------------------------


def test_models_retrieve_and_unknown_endpoints(live: LiveWarden) -> None:
    client = oai(live)
    assert client.models.retrieve("gpt-fake").id == "gpt-fake"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("not-routed")
    listed = [m.id for m in claude(live).models.list()]
    assert "claude-fake" in listed
    response = httpx.post(
        live.base_url + "/audio/speech", json={}, headers={"authorization": f"Bearer {live.create_key()}"}
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == "unsupported_endpoint"
    assert live.row_for(response.headers["x-warden-request-id"])["route"] == "unsupported"
