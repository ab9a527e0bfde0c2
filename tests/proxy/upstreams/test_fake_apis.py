"""The fake upstream speaks the Responses and Messages APIs well enough for the official SDKs, fails on
every path the way its model name asks, and fakes chat logprobs (so tests can check Warden scrubs them)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from proxy.upstreams.fake import FakeUpstream

TOOL = {"type": "function", "name": "lookup", "parameters": {"type": "object"}, "strict": False}
CLAUDE_TOOL = {"name": "lookup", "input_schema": {"type": "object"}}


@pytest.fixture
def oai(fake_upstream: FakeUpstream, http: httpx.Client) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake_upstream.base_url, api_key="x", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(fake_upstream: FakeUpstream, http: httpx.Client) -> Iterator[anthropic.Anthropic]:
    # Anthropic's SDK adds /v1 itself.
    with anthropic.Anthropic(base_url=fake_upstream.root_url, api_key="x", max_retries=0) as client:
        yield client


def event_names(raw: bytes) -> list[str]:
    return [line[len("event: ") :] for line in raw.decode().splitlines() if line.startswith("event: ")]


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    # One client for the module: building one (its TLS context) costs more than a fake request.
    with httpx.Client(timeout=5) as client:
        yield client


def post(http: httpx.Client, fake: FakeUpstream, path: str, body: dict[str, object]) -> httpx.Response:
    return http.post(f"{fake.root_url}{path}", json=body)


# -- Responses API ---------------------------------------------------------------------------------


def test_responses_json(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model="gpt-fake", input="hello there friend")
    assert response.id.startswith("resp_") and response.status == "completed"
    assert response.output_text == "hello there friend"
    assert response.usage is not None
    assert (response.usage.output_tokens, response.usage.input_tokens_details.cached_tokens) == (3, 0)
    assert response.usage.total_tokens == response.usage.input_tokens + 3


def test_responses_echo_the_last_user_item(oai: openai.OpenAI) -> None:
    response = oai.responses.create(
        model="gpt-fake",
        input=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {
                "role": "user",
                "content": [{"type": "input_text", "text": "from "}, {"type": "input_text", "text": "parts"}],
            },
        ],
    )
    assert response.output_text == "from parts"


def test_responses_stream_events(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(model="gpt-fake", input="stream these words", stream=True))
    types = [event.type for event in events]
    deltas = types.count("response.output_text.delta")
    assert deltas > 1
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1]
    assert final.type == "response.completed"
    assert text == final.response.output_text == "stream these words"


def test_responses_stream_accumulates_in_the_sdk_helper(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="gpt-fake", input="helper text") as stream:
        assert stream.get_final_response().output_text == "helper text"


def test_responses_function_call(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model="fake-tools", input="call it", tools=[TOOL])
    (call,) = response.output
    assert call.type == "function_call" and call.name == "lookup" and call.call_id.startswith("call_")
    assert json.loads(call.arguments) == {"text": "call it"}


def test_responses_function_call_stream(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(model="fake-tools", input="stream a call", tools=[TOOL], stream=True))
    arguments = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(arguments) == {"text": "stream a call"}
    assert "response.function_call_arguments.done" in [e.type for e in events]
    with oai.responses.stream(model="fake-tools", input="helper call", tools=[TOOL]) as stream:
        (call,) = stream.get_final_response().output
    assert call.type == "function_call" and json.loads(call.arguments) == {"text": "helper call"}


def test_responses_logprobs_when_included(oai: openai.OpenAI) -> None:
    include = ["message.output_text.logprobs"]
    response = oai.responses.create(model="gpt-fake", input="some words", include=include)
    part = response.output[0].content[0]
    assert part.type == "output_text" and part.logprobs
    assert "".join(entry.token for entry in part.logprobs) == "some words"
    events = list(oai.responses.create(model="gpt-fake", input="some words", include=include, stream=True))
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert all([entry.token for entry in e.logprobs] == [e.delta] for e in deltas)
    plain = oai.responses.create(model="gpt-fake", input="no logprobs")
    assert not getattr(plain.output[0].content[0], "logprobs", None)


# -- Messages API ----------------------------------------------------------------------------------


def test_messages_json(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model="claude-fake",
        max_tokens=50,
        system="be brief",
        messages=[
            {"role": "user", "content": "earlier"},
            {"role": "assistant", "content": "yes"},
            {"role": "user", "content": [{"type": "text", "text": "hello claude"}]},
        ],
    )
    assert message.id.startswith("msg_") and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text == "hello claude"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 2 and message.usage.input_tokens > 0


def test_messages_stream_event_sequence(fake_upstream: FakeUpstream, http: httpx.Client) -> None:
    body = {
        "model": "claude-fake",
        "max_tokens": 9,
        "stream": True,
        "messages": [{"role": "user", "content": "ab cd ef"}],
    }
    reply = post(http, fake_upstream, "/v1/messages", body)
    names = event_names(reply.content)
    deltas = names.count("content_block_delta")
    assert deltas > 1
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    data = [json.loads(line[6:]) for line in reply.text.splitlines() if line.startswith("data: ")]
    assert [d["type"] for d in data] == names, "each data's type is its event's name"
    assert data[-2]["delta"]["stop_reason"] == "end_turn" and data[-2]["usage"]["output_tokens"] == 3


def test_messages_stream_with_the_sdk(claude: anthropic.Anthropic) -> None:
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": "stream to claude"}]
    with claude.messages.stream(model="claude-fake", max_tokens=50, messages=messages) as stream:
        assert "".join(stream.text_stream) == "stream to claude"
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 3


def test_messages_tool_use(claude: anthropic.Anthropic) -> None:
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": "use lookup"}]
    message = claude.messages.create(
        model="fake-tools", max_tokens=50, messages=messages, tools=[CLAUDE_TOOL]
    )
    (block,) = message.content
    assert block.type == "tool_use" and block.name == "lookup" and block.id.startswith("toolu_")
    assert block.input == {"text": "use lookup"} and message.stop_reason == "tool_use"
    with claude.messages.stream(
        model="fake-tools", max_tokens=50, messages=messages, tools=[CLAUDE_TOOL]
    ) as stream:
        final = stream.get_final_message()
    (block,) = final.content
    assert block.type == "tool_use" and block.input == {"text": "use lookup"}


@pytest.mark.parametrize("stream", [False, True])
def test_tools_models_answer_a_tool_result_with_its_text(
    oai: openai.OpenAI, claude: anthropic.Anthropic, stream: bool
) -> None:
    """An agent loop ends: once the last input is a tool's result, the tools model answers with its text."""
    responses_input = [
        {"role": "user", "content": "use lookup"},
        {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "found it"},
    ]
    chat_messages = [
        {"role": "user", "content": "use lookup"},
        {"role": "assistant", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "found it"},
    ]  # fmt: skip
    claude_messages = [
        {"role": "user", "content": "use lookup"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "lookup", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "found it"}]},
    ]
    chat_tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    if stream:
        with oai.responses.stream(model="fake-tools", input=responses_input, tools=[TOOL]) as events:
            response = events.get_final_response()
        chunks = oai.chat.completions.create(
            model="fake-tools", messages=chat_messages, tools=[chat_tool], stream=True
        )
        chat_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        with claude.messages.stream(
            model="fake-tools", max_tokens=50, messages=claude_messages, tools=[CLAUDE_TOOL]
        ) as s:
            message = s.get_final_message()
    else:
        response = oai.responses.create(model="fake-tools", input=responses_input, tools=[TOOL])
        completion = oai.chat.completions.create(
            model="fake-tools", messages=chat_messages, tools=[chat_tool]
        )
        assert completion.choices[0].finish_reason == "stop"
        chat_text = completion.choices[0].message.content
        message = claude.messages.create(
            model="fake-tools", max_tokens=50, messages=claude_messages, tools=[CLAUDE_TOOL]
        )
    assert [item.type for item in response.output] == ["message"] and response.output_text == "found it"
    assert chat_text == "found it"
    assert message.stop_reason == "end_turn" and [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "found it"


def test_count_tokens_and_models(claude: anthropic.Anthropic, oai: openai.OpenAI) -> None:
    counted = claude.messages.count_tokens(
        model="claude-fake", messages=[{"role": "user", "content": "count these three"}]
    )
    assert counted.input_tokens > 0
    assert claude.models.retrieve("claude-x").id == "claude-x"
    assert oai.models.retrieve("gpt-x").owned_by == "fake"


def test_requests_without_a_key_are_answered_and_recorded(
    fake_upstream: FakeUpstream, http: httpx.Client
) -> None:
    body = {"model": "claude-fake", "max_tokens": 5, "messages": [{"role": "user", "content": "no key"}]}
    reply = post(http, fake_upstream, "/v1/messages", body)
    assert reply.status_code == 200 and reply.headers["request-id"].startswith("req_")
    path, recorded, headers = fake_upstream.requests[-1]
    assert (path, recorded) == ("/v1/messages", body) and "x-api-key" not in headers


# -- failure modes on every path -------------------------------------------------------------------

PATHS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/messages",
    "/v1/messages/count_tokens",
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("status", "anthropic_type"),
    [(400, "invalid_request_error"), (429, "rate_limit_error"), (500, "api_error")],
)
def test_error_models_answer_in_the_shape_of_the_api(
    fake_upstream: FakeUpstream, http: httpx.Client, path: str, status: int, anthropic_type: str
) -> None:
    reply = post(http, fake_upstream, path, {"model": f"fake-{status}", "messages": [], "input": "x"})
    assert reply.status_code == status
    assert (reply.headers.get("retry-after") == "1") == (status == 429)
    if "/messages" in path:
        assert reply.json() == {
            "type": "error",
            "error": {"type": anthropic_type, "message": f"fake error {status}"},
        }
    else:
        assert reply.json()["error"]["code"] == status


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "fake-tools", "messages": [{"role": "user"}], "tools": [[]]}),
        ("/v1/chat/completions", {"model": "fake-tools", "messages": [], "tools": [{"function": [None]}]}),
        ("/v1/messages", {"model": "claude-fake", "messages": 5}),
    ],
)
def test_a_request_the_fake_cannot_read_gets_a_400_in_the_apis_shape(
    fake_upstream: FakeUpstream, http: httpx.Client, path: str, body: dict
) -> None:
    """Found by the fuzzer (through Warden): malformed tools crashed the fake's handler, so Warden saw
    a reset connection (a 502) where a real API answers 400."""
    reply = post(http, fake_upstream, path, body)
    assert reply.status_code == 400
    if "/messages" in path:
        assert reply.json()["type"] == "error" and reply.json()["error"]["type"] == "invalid_request_error"
    else:
        assert set(reply.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("path", PATHS)
def test_garbage_reset_and_hang_on_every_path(
    fake_upstream: FakeUpstream, http: httpx.Client, path: str
) -> None:
    garbage = post(http, fake_upstream, path, {"model": "fake-garbage"})
    assert garbage.status_code == 200 and garbage.headers["content-type"] == "text/html"
    with pytest.raises(httpx.TransportError):
        post(http, fake_upstream, path, {"model": "fake-reset"})
    fake_upstream.behaviour.hang_seconds = 0.3
    with pytest.raises(httpx.ReadTimeout):
        http.post(f"{fake_upstream.root_url}{path}", json={"model": "fake-hang"}, timeout=0.05)


def test_cut_streams_end_before_their_completion_event(
    fake_upstream: FakeUpstream, http: httpx.Client
) -> None:
    messages = post(
        http,
        fake_upstream,
        "/v1/messages",
        {"model": "fake-cut", "stream": True, "messages": [{"role": "user", "content": "cut me off"}]},
    )
    names = event_names(messages.content)
    assert "content_block_delta" in names and "message_stop" not in names
    responses = post(
        http, fake_upstream, "/v1/responses", {"model": "fake-cut", "stream": True, "input": "cut me off"}
    )
    names = event_names(responses.content)
    assert "response.output_text.delta" in names and "response.completed" not in names


def test_anthropic_errors_raise_the_sdk_exceptions(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.messages.create(model="fake-429", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "fake error 429"},
    }
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(model="fake-400", max_tokens=5, messages=[{"role": "user", "content": "x"}])


# -- chat logprobs -----------------------------------------------------------------------------------


def test_chat_logprobs_in_json_and_stream_chunks(oai: openai.OpenAI) -> None:
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "log my probs"}
    ]
    completion = oai.chat.completions.create(model="gpt-fake", messages=messages, logprobs=True)
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    assert "".join(entry.token for entry in logprobs.content) == "log my probs"
    assert logprobs.content[0].bytes == list(logprobs.content[0].token.encode())
    chunks = [
        c
        for c in oai.chat.completions.create(model="gpt-fake", messages=messages, logprobs=True, stream=True)
        if c.choices
    ]
    with_text = [c.choices[0] for c in chunks if c.choices[0].delta.content]
    assert with_text and all(
        c.logprobs and [e.token for e in c.logprobs.content or []] == [c.delta.content] for c in with_text
    )
    plain = oai.chat.completions.create(model="gpt-fake", messages=messages)
    assert plain.choices[0].logprobs is None
