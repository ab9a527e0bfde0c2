"""The official openai SDK against a live Warden, against a fake upstream on loopback; every
exchange is checked in ClickHouse (in-process chDB and a ClickHouse HTTP endpoint)."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from proxy.upstreams.fake import FakeUpstream
from tests.support import LiveWarden


def client(warden: LiveWarden, key: str | None = None, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=warden.base_url, api_key=key or warden.create_key(), max_retries=0, **kwargs
    )


def test_chat_completion_is_relayed_and_logged(warden: LiveWarden, fake_upstream: FakeUpstream) -> None:
    raw = client(warden).chat.completions.with_raw_response.create(
        model="gpt-fake", messages=[{"role": "user", "content": "hello warden"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "hello warden"
    assert completion.usage.prompt_tokens > 0
    request_id = raw.headers["x-warden-request-id"]
    assert float(raw.headers["x-warden-overhead-ms"]) >= 0
    # The upstream saw Warden's credential, never the caller's virtual key.
    path, _, headers = fake_upstream.requests[-1]
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == "Bearer sk-upstream-secret"
    assert headers["x-request-id"] == request_id

    row = warden.row_for(request_id)
    assert row["status"] == 200 and row["error_class"] == ""
    assert (row["tenant"], row["team"], row["route"], row["model"], row["upstream"]) == (
        "default",
        "alpha",
        "chat.completions",
        "gpt-fake",
        "fake",
    )
    assert row["streamed"] is False
    assert row["prompt_tokens"] == completion.usage.prompt_tokens
    assert row["completion_tokens"] == completion.usage.completion_tokens
    assert row["finish_reason"] == "stop" and row["choices"] == 1
    assert row["latency_ms"] >= row["upstream_ms"] > 0
    # 0.15 and 0.6 USD per 1M tokens are 0.15 and 0.6 micro-USD per token.
    expected = round(completion.usage.prompt_tokens * 0.15 + completion.usage.completion_tokens * 0.6)
    assert row["cost_micro_usd"] == expected


def test_unknown_fields_reach_the_upstream_untouched(warden: LiveWarden, fake_upstream: FakeUpstream) -> None:
    extra = {"seed": 7, "logprobs": True, "stop": ["\n\n"], "vendor_field": {"nested": [1, 2.5, None]}}
    client(warden).chat.completions.create(
        model="gpt-fake", messages=[{"role": "user", "content": "x"}], extra_body=extra
    )
    _, body, _ = fake_upstream.requests[-1]
    for name, value in extra.items():
        assert body[name] == value


def test_stream_with_usage(warden: LiveWarden) -> None:
    stream = client(warden).chat.completions.create(
        model="gpt-fake",
        messages=[{"role": "user", "content": "stream me please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "stream me please"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    rows = warden.rows_dicts("SELECT * FROM requests")
    assert len(rows) == 1
    row = rows[0]
    assert row["streamed"] is True and row["status"] == 200 and row["error_class"] == ""
    assert row["completion_tokens"] == 3 and row["finish_reason"] == "stop"
    assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] <= row["latency_ms"]


def test_stream_without_usage_still_logs_tokens(warden: LiveWarden, fake_upstream: FakeUpstream) -> None:
    stream = client(warden).chat.completions.create(
        model="gpt-fake", messages=[{"role": "user", "content": "count my tokens"}], stream=True
    )
    chunks = list(stream)
    # Warden asked the upstream for usage on its own behalf; the client must not see that chunk.
    assert all(chunk.choices for chunk in chunks)
    assert fake_upstream.requests[-1][1]["stream_options"] == {"include_usage": True}
    (row,) = warden.rows_dicts("SELECT * FROM requests")
    assert row["completion_tokens"] == 3 and row["prompt_tokens"] > 0


def test_tools_n_and_response_format(warden: LiveWarden, fake_upstream: FakeUpstream) -> None:
    api = client(warden)
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    completion = api.chat.completions.create(
        model="fake-tools", messages=[{"role": "user", "content": "use a tool"}], tools=tools
    )
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {"text": "use a tool"}
    assert completion.choices[0].finish_reason == "tool_calls"

    many = api.chat.completions.create(
        model="gpt-fake",
        messages=[{"role": "user", "content": "three"}],
        n=3,
        response_format={"type": "json_object"},
    )
    assert [c.index for c in many.choices] == [0, 1, 2]
    assert fake_upstream.requests[-1][1]["response_format"] == {"type": "json_object"}
    rows = warden.rows("SELECT model, choices, finish_reason FROM requests ORDER BY ts")
    assert rows == [("fake-tools", 1, "tool_calls"), ("gpt-fake", 3, "stop")]


def test_streamed_tool_call(warden: LiveWarden) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    chunks = list(
        client(warden).chat.completions.create(
            model="fake-tools", messages=[{"role": "user", "content": "t"}], tools=tools, stream=True
        )
    )
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function.name == "lookup"
    assert warden.rows("SELECT finish_reason FROM requests") == [("tool_calls",)]


def test_completions_embeddings_and_models(warden: LiveWarden) -> None:
    key = warden.create_key(models=["gpt-fake", "text-embed-fake"])
    api = client(warden, key)
    assert api.completions.create(model="gpt-fake", prompt="say this").choices[0].text == "say this"
    embedding = api.embeddings.create(model="text-embed-fake", input=["a b", "c"])
    assert len(embedding.data) == 2 and embedding.usage.prompt_tokens == 3
    assert sorted(m.id for m in api.models.list()) == ["gpt-fake", "text-embed-fake"]
    # A model routed by Warden but not granted to this key is refused before any upstream call.
    with pytest.raises(openai.PermissionDeniedError):
        api.chat.completions.create(model="fake-tools", messages=[{"role": "user", "content": "x"}])
    rows = warden.rows("SELECT route, model, status, error_class FROM requests ORDER BY ts")
    assert rows == [
        ("completions", "gpt-fake", 200, ""),
        ("embeddings", "text-embed-fake", 200, ""),
        ("models", "", 200, ""),
        ("chat.completions", "fake-tools", 403, "model_not_allowed"),
    ]


def test_async_client(warden: LiveWarden) -> None:
    key = warden.create_key()

    async def run() -> tuple[str, str]:
        api = openai.AsyncOpenAI(base_url=warden.base_url, api_key=key, max_retries=0)
        one = await api.chat.completions.create(
            model="gpt-fake", messages=[{"role": "user", "content": "a1"}]
        )
        stream = await api.chat.completions.create(
            model="gpt-fake", messages=[{"role": "user", "content": "a2"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
        await api.close()
        return one.choices[0].message.content, text

    assert asyncio.run(run()) == ("a1", "a2")
    assert warden.rows("SELECT count() FROM requests WHERE status = 200") == [(2,)]


@pytest.mark.parametrize(
    ("model", "error", "status", "error_class"),
    [
        ("no-such-model", openai.NotFoundError, 404, "model_not_found"),
        ("fake-429", openai.RateLimitError, 429, "upstream_rate_limited"),
        ("fake-400", openai.BadRequestError, 400, "upstream_400"),
        ("fake-500", openai.InternalServerError, 502, "upstream_error"),
        ("fake-garbage", openai.InternalServerError, 502, "upstream_bad_response"),
        ("fake-reset", openai.InternalServerError, 502, "upstream_unreachable"),
        ("fake-hang", openai.InternalServerError, 504, "upstream_timeout"),
    ],
)
def test_upstream_and_routing_errors(
    warden: LiveWarden, model: str, error: type, status: int, error_class: str
) -> None:
    api = client(warden)
    with pytest.raises(error) as caught:
        api.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict) and caught.value.body.get("message")
    request_id = caught.value.response.headers["x-warden-request-id"]
    row = warden.row_for(request_id)
    # A model Warden does not route is recorded under a fixed label, never the caller's string.
    recorded = "(unrouted)" if error_class == "model_not_found" else model
    assert (row["status"], row["error_class"], row["model"]) == (status, error_class, recorded)
    if model == "fake-429":
        assert caught.value.response.headers["retry-after"] == "1"
    # Warden stays up and serves the next request.
    assert api.chat.completions.create(model="gpt-fake", messages=[{"role": "user", "content": "ok"}])


def test_bad_keys_are_rejected_and_logged(warden: LiveWarden) -> None:
    for key in ("wdn-not-a-real-key", "sk-something-else"):
        with pytest.raises(openai.AuthenticationError):
            client(warden, key).chat.completions.create(
                model="gpt-fake", messages=[{"role": "user", "content": "x"}]
            )
    key = warden.create_key()
    warden.services.keys.revoke(warden.services.keys.list()[-1].id)
    with pytest.raises(openai.AuthenticationError):
        client(warden, key).models.list()
    rows = warden.rows("SELECT status, error_class, api_key_id FROM requests")
    assert rows == [(401, "unauthorized", "")] * 3


def test_cut_stream_is_logged_as_incomplete(warden: LiveWarden) -> None:
    stream = client(warden).chat.completions.create(
        model="fake-cut", messages=[{"role": "user", "content": "this stream will be cut"}], stream=True
    )
    received = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert received and received != "this stream will be cut"
    assert warden.rows("SELECT status, error_class FROM requests") == [(200, "upstream_incomplete_stream")]
