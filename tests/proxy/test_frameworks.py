"""Real client frameworks through a live Warden: LangChain's `ChatOpenAI` on the Responses API and the
OpenAI Agents SDK's default (Responses) model, each in front of an upstream that speaks the Responses API
natively and one that speaks only chat completions, where Warden translates.

Whatever the framework builds (input items, function calls, their outputs, streamed events), the upstream
sees the masked address only and the framework gets the real one back, in text and in tool arguments;
every request is logged on route `responses`. Nothing leaves the loopback: the fake upstream answers,
and the Agents SDK's tracing is off.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIResponsesModel,
    RunConfig,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from agents.models.openai_provider import OpenAIProvider
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI
from openai import AsyncOpenAI
from pydantic import BaseModel

from proxy.upstreams.fake import FakeUpstream
from tests.support import LiveWarden, make_settings

EMAIL = "jane.roe@example.com"
MASKED = "<EMAIL_1>"
NATIVE, TRANSLATED = "gpt-fake", "chat-only"
NATIVE_TOOLS, TRANSLATED_TOOLS = "fake-tools", "chat-only-tools"
PATHS = {
    NATIVE: "/v1/responses",
    NATIVE_TOOLS: "/v1/responses",
    TRANSLATED: "/v1/chat/completions",
    TRANSLATED_TOOLS: "/v1/chat/completions",
}


def _loopback(host: object) -> bool:
    name = host.decode() if isinstance(host, bytes) else host
    if name is None or name == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(name)).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="module", autouse=True)
def loopback_only() -> Iterator[None]:
    """Nothing may leave the machine: name lookups and connections past loopback are refused and fail the
    module, even where a framework swallows the error (telemetry, tokenizer downloads)."""
    reached: list[object] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def guarded(real: Any) -> Any:
        def connect(sock: socket.socket, address: Any) -> Any:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
                reached.append(address)
                raise ConnectionRefusedError(f"tests reach nothing past loopback: {address}")
            return real(sock, address)

        return connect

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _loopback(host):
            reached.append(host)
            raise socket.gaierror(socket.EAI_NONAME, f"tests resolve nothing past loopback: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", guarded(real_connect))
        patch.setattr(socket.socket, "connect_ex", guarded(real_connect_ex))
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        yield
    assert not reached, f"something tried to reach past loopback: {reached}"


# One fake and one Warden for the module (starting a Warden costs more than all its requests here); each
# test has its own key, so its rows are the rows of that key, and looks only at the requests it caused.
@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> Iterator[LiveWarden]:
    upstreams = [
        {
            "name": "native",
            "type": "openai",
            "base_url": fake.base_url,
            "api_key": "sk-upstream-secret",
            "models": [NATIVE, NATIVE_TOOLS],
            "retries": 0,
        },
        {
            "name": "chatonly",
            "type": "openai",
            "apis": ["chat.completions"],
            "base_url": fake.base_url,
            "models": [TRANSLATED, TRANSLATED_TOOLS],
            "retries": 0,
        },
    ]
    warden = LiveWarden(make_settings(tmp_path_factory.mktemp("frameworks"), None, upstreams=upstreams))
    yield warden
    warden.stop()


@pytest.fixture(scope="module", autouse=True)
def no_tracing() -> None:
    """The Agents SDK exports traces to OpenAI unless told not to. Off for good in this process (each run
    also says `tracing_disabled`): nothing here should ever export anything."""
    set_tracing_disabled(True)


class Caller:
    """A fresh key, the rows logged under it, and the upstream requests made since it was created."""

    def __init__(self, live: LiveWarden, fake: FakeUpstream) -> None:
        info, self.secret = live.services.keys.create("alpha")
        self.key_id = info.id
        self._live, self._fake = live, fake
        self._start = len(fake.requests)

    def sent(self) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
        return list(self._fake.requests)[self._start :]

    def rows(self) -> list[dict[str, Any]]:
        return self._live.rows_dicts(
            "SELECT * FROM requests WHERE api_key_id = {key:String} ORDER BY ts", {"key": self.key_id}
        )


@pytest.fixture
def caller(live: LiveWarden, fake: FakeUpstream) -> Caller:
    return Caller(live, fake)


def assert_masked_upstream(caller: Caller, model: str, count: int) -> list[dict[str, Any]]:
    """`count` requests reached the upstream, on the path `model`'s upstream speaks, none with the address."""
    sent = caller.sent()
    assert [path for path, _, _ in sent] == [PATHS[model]] * count
    for _, body, _ in sent:
        text = json.dumps(body)
        assert EMAIL not in text and MASKED in text
    return [body for _, body, _ in sent]


def assert_rows(caller: Caller, model: str, *, streamed: bool, count: int = 1) -> list[dict[str, Any]]:
    rows = caller.rows()
    assert [(r["route"], r["model"], r["status"], r["streamed"]) for r in rows] == [
        ("responses", model, 200, streamed)
    ] * count
    assert all(r["decision"] == "mask" and r["completion_tokens"] > 0 for r in rows)
    return rows


# -- LangChain ---------------------------------------------------------------------------------------


def chat_model(live: LiveWarden, caller: Caller, model: str) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=live.base_url,
        api_key=caller.secret,
        model=model,
        use_responses_api=True,
        include_response_headers=True,  # for x-warden-request-id
        max_retries=0,
        timeout=10,
    )


def send_mail(text: str) -> str:
    """Send an e-mail with this text."""
    raise AssertionError("LangChain only binds the tool here; the test answers it")


def combined(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


@pytest.mark.parametrize("model", [NATIVE, TRANSLATED])
def test_langchain_invoke(live: LiveWarden, caller: Caller, model: str) -> None:
    answer = chat_model(live, caller, model).invoke(f"write to {EMAIL}")
    assert isinstance(answer, AIMessage) and answer.text == f"write to {EMAIL}"
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] > 0
    (body,) = assert_masked_upstream(caller, model, 1)
    assert f"write to {MASKED}" in json.dumps(body)
    (row,) = assert_rows(caller, model, streamed=False)
    assert row["request_id"] == uuid.UUID(answer.response_metadata["headers"]["x-warden-request-id"])
    assert row["finish_reason"] == "stop"


@pytest.mark.parametrize("model", [NATIVE, TRANSLATED])
def test_langchain_stream(live: LiveWarden, caller: Caller, model: str) -> None:
    chunks = list(chat_model(live, caller, model).stream(f"stream to {EMAIL} now"))
    assert len([c for c in chunks if c.text]) > 1, "streamed in pieces, not one block"
    total = combined(chunks)
    assert total.text == f"stream to {EMAIL} now"
    assert total.usage_metadata is not None and total.usage_metadata["output_tokens"] > 0
    assert total.response_metadata["status"] == "completed"
    (body,) = assert_masked_upstream(caller, model, 1)
    assert body["stream"] is True
    (row,) = assert_rows(caller, model, streamed=True)
    assert row["request_id"] == uuid.UUID(chunks[0].response_metadata["headers"]["x-warden-request-id"])


@pytest.mark.parametrize("model", [NATIVE_TOOLS, TRANSLATED_TOOLS])
@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_langchain_bound_tool_round_trip(live: LiveWarden, caller: Caller, model: str, stream: bool) -> None:
    llm = chat_model(live, caller, model).bind_tools([send_mail])
    question = HumanMessage(f"please mail {EMAIL}")
    first = combined(list(llm.stream([question]))) if stream else llm.invoke([question])
    (call,) = first.tool_calls
    assert call["name"] == "send_mail" and call["args"] == {"text": f"please mail {EMAIL}"}
    # The tool's answer goes back; the fake's tools model answers a tool result with its text.
    history = [question, first, ToolMessage(f"sent to {EMAIL}", tool_call_id=call["id"])]
    second = combined(list(llm.stream(history))) if stream else llm.invoke(history)
    assert second.text == f"sent to {EMAIL}" and not second.tool_calls
    first_body, second_body = assert_masked_upstream(caller, model, 2)
    assert first_body["tools"], "the bound tool reached the upstream"
    # The function call and its output went back up masked: the address three times in all.
    assert json.dumps(second_body).count(MASKED) >= 3
    rows = assert_rows(caller, model, streamed=stream, count=2)
    assert [r["finish_reason"] for r in rows] == ["tool_calls", "stop"]


class Contact(BaseModel):
    email: str
    name: str


@pytest.mark.parametrize("model", [NATIVE, TRANSLATED])
def test_langchain_structured_output(live: LiveWarden, caller: Caller, model: str) -> None:
    """A JSON schema answer (`text.format`, or `response_format` once translated) is restored in place,
    so the framework's parser gets valid JSON with the real address (the fake echoes the JSON prompt)."""
    llm = chat_model(live, caller, model).with_structured_output(Contact, method="json_schema")
    contact = llm.invoke(json.dumps({"email": EMAIL, "name": "Jane"}))
    assert contact == Contact(email=EMAIL, name="Jane")
    (body,) = assert_masked_upstream(caller, model, 1)
    schema = body["text"]["format"] if model == NATIVE else body["response_format"]
    assert schema["type"] == "json_schema"
    assert_rows(caller, model, streamed=False)


# -- OpenAI Agents SDK -------------------------------------------------------------------------------


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A fresh event loop for the thread. `Runner.run_sync` runs on the thread's loop and shuts its async
    generators down after each run, so a second run on the same loop warns (an error under pytest)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture
def run_config(live: LiveWarden, caller: Caller, loop: asyncio.AbstractEventLoop) -> Iterator[RunConfig]:
    """The SDK's own provider on Warden: an agent's model name resolves to its default Responses model."""
    client = AsyncOpenAI(base_url=live.base_url, api_key=caller.secret, max_retries=0, timeout=10)
    provider = OpenAIProvider(openai_client=client, use_responses=True)
    yield RunConfig(model_provider=provider, tracing_disabled=True)
    loop.run_until_complete(client.close())


@pytest.mark.parametrize("model", [NATIVE, TRANSLATED])
def test_agent_answers_with_the_real_address(caller: Caller, run_config: RunConfig, model: str) -> None:
    agent = Agent(name="mailer", instructions=f"Copy {EMAIL} on replies.", model=model)
    assert isinstance(run_config.model_provider.get_model(model), OpenAIResponsesModel)
    result = Runner.run_sync(agent, f"write to {EMAIL}", run_config=run_config)
    assert result.final_output == f"write to {EMAIL}"
    (body,) = assert_masked_upstream(caller, model, 1)
    assert f"Copy {MASKED}" in json.dumps(body), "the instructions are masked too"
    (row,) = assert_rows(caller, model, streamed=False)
    assert row["finish_reason"] == "stop"


@pytest.mark.parametrize("model", [NATIVE_TOOLS, TRANSLATED_TOOLS])
@pytest.mark.parametrize("streamed", [False, True], ids=["run", "streamed"])
def test_agent_function_tool_gets_the_real_address(
    caller: Caller, run_config: RunConfig, loop: asyncio.AbstractEventLoop, model: str, streamed: bool
) -> None:
    received: list[str] = []

    @function_tool
    def send_mail(text: str) -> str:
        """Send an e-mail with this text."""
        received.append(text)
        return f"sent: {text}"

    agent = Agent(
        name="mailer",
        instructions="Use send_mail.",
        model=model,
        tools=[send_mail],
        model_settings=ModelSettings(tool_choice="auto"),
    )
    prompt = f"please mail {EMAIL}"
    if streamed:

        async def run() -> tuple[Any, list[Any]]:
            result = Runner.run_streamed(agent, prompt, max_turns=3, run_config=run_config)
            return result, [event async for event in result.stream_events()]

        result, events = loop.run_until_complete(run())
        raw = [e.data for e in events if e.type == "raw_response_event"]
        arguments = "".join(e.delta for e in raw if e.type == "response.function_call_arguments.delta")
        assert json.loads(arguments) == {"text": prompt}, "the streamed arguments are restored"
        # (The fake's chat stream carries the echo as text beside its tool call: only the last response's
        # text is the answer.)
        last = max(i for i, e in enumerate(raw) if e.type == "response.created")
        text = "".join(e.delta for e in raw[last:] if e.type == "response.output_text.delta")
        assert text == f"sent: {prompt}", "so is the streamed answer"
        assert any(e.type == "run_item_stream_event" and e.name == "tool_output" for e in events)
    else:
        result = Runner.run_sync(agent, prompt, max_turns=3, run_config=run_config)
    assert received == [prompt], "the tool ran once, with the real address"
    assert result.final_output == f"sent: {prompt}"
    # The first request carries the prompt, the second the function call and its output: the upstream
    # never saw the address in any of them.
    first_body, second_body = assert_masked_upstream(caller, model, 2)
    assert first_body["tools"] and json.dumps(second_body).count(MASKED) >= 3
    rows = assert_rows(caller, model, streamed=streamed, count=2)
    assert [r["finish_reason"] for r in rows] == ["tool_calls", "stop"]


@pytest.mark.parametrize("model", [NATIVE, TRANSLATED])
def test_agent_structured_output(caller: Caller, run_config: RunConfig, model: str) -> None:
    agent = Agent(name="contacts", model=model, output_type=Contact)
    result = Runner.run_sync(agent, json.dumps({"email": EMAIL, "name": "Jane"}), run_config=run_config)
    assert result.final_output == Contact(email=EMAIL, name="Jane")
    assert_masked_upstream(caller, model, 1)
    assert_rows(caller, model, streamed=False)
