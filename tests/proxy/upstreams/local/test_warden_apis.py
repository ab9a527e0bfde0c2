"""The Responses API and Anthropic's Messages API through Warden, in front of the local model.

The local model speaks chat completions only, so Warden translates both ways. Its answers are random
tokens, but greedy decoding makes them fixed: the engine, asked directly, gives the text, token count
and finish reason each SDK must get back, with the finish reason in that API's words.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from proxy.upstreams.local.engine import OnnxEngine
from proxy.upstreams.local.sampling import SamplingParams
from tests.support import LiveWarden, make_settings

# (user text, system text, max tokens): with the tiny model of seed 0, greedy decoding ends the first
# with eos before its limit and cuts the second at its limit, so both finish reasons are mapped. On a
# machine where they end otherwise, the tests still check whichever mapping applies.
CASES = [("the end", None, 64), ("def hello world", "Be brief.", 16)]
IDS = ["eos", "cut"]
RESPONSES = {"stop": ("completed", None), "length": ("incomplete", "max_output_tokens")}
MESSAGES = {"stop": "end_turn", "length": "max_tokens"}


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[LiveWarden]:
    settings = make_settings(
        tmp_path_factory.mktemp("local-apis"),
        None,
        upstreams=[
            {"name": "tiny", "type": "onnx", "path": str(tiny_model), "models": ["tiny"], "provider": "cpu",
             "max_batch": 4, "max_tokens": 24}
        ],
    )  # fmt: skip
    live = LiveWarden(settings)
    yield live
    live.stop()


class Caller:
    """A fresh key (so the rows of one test are those of its key) and SDK clients on it."""

    def __init__(self, live: LiveWarden) -> None:
        info, secret = live.services.keys.create("alpha")
        self.key_id, self._live = info.id, live
        self.oai = openai.OpenAI(base_url=live.base_url, api_key=secret, max_retries=0, timeout=30)
        self.claude = anthropic.Anthropic(
            base_url=live.base_url.removesuffix("/v1"), api_key=secret, max_retries=0, timeout=30
        )

    def rows(self) -> list[dict[str, Any]]:
        return self._live.rows_dicts(
            "SELECT * FROM requests WHERE api_key_id = {key:String} ORDER BY ts", {"key": self.key_id}
        )

    def close(self) -> None:
        self.oai.close()
        self.claude.close()


@pytest.fixture
def caller(local: LiveWarden) -> Iterator[Caller]:
    made = Caller(local)
    yield made
    made.close()


def expected(engine: OnnxEngine, text: str, system: str | None, max_tokens: int) -> tuple[str, int, str]:
    """What the local model answers, greedily: text, completion tokens, chat finish reason."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": text})
    generation = engine.generate(
        engine.chat_prompt(messages), SamplingParams(temperature=0, max_tokens=max_tokens)
    )
    answer = generation.text()
    assert answer and generation.finish_reason in ("stop", "length")
    return answer, generation.completion_tokens, generation.finish_reason


def assert_rows(caller: Caller, route: str, finish: str, tokens: int) -> None:
    rows = caller.rows()
    assert [(r["route"], r["model"], r["upstream"], r["status"], r["streamed"]) for r in rows] == [
        (route, "tiny", "tiny", 200, False),
        (route, "tiny", "tiny", 200, True),
    ]
    assert all(r["finish_reason"] == finish and r["completion_tokens"] == tokens for r in rows)
    assert all(r["prompt_tokens"] > 0 for r in rows)


@pytest.mark.parametrize(("text", "system", "max_tokens"), CASES, ids=IDS)
def test_responses_json_and_stream(
    caller: Caller, engine: OnnxEngine, text: str, system: str | None, max_tokens: int
) -> None:
    answer, tokens, finish = expected(engine, text, system, max_tokens)
    status, reason = RESPONSES[finish]
    asked: dict[str, Any] = {"model": "tiny", "input": text, "max_output_tokens": max_tokens}
    asked["temperature"] = 0
    if system:
        asked["instructions"] = system
    response = caller.oai.responses.create(**asked)
    assert response.output_text == answer and response.status == status
    assert (response.incomplete_details.reason if response.incomplete_details else None) == reason
    (item,) = response.output
    assert item.type == "message" and item.role == "assistant"
    assert response.usage is not None and response.usage.output_tokens == tokens
    assert response.usage.input_tokens > 0

    # The SDK's stream helper wants a `response.completed` event, which an incomplete response does not
    # send (nor does OpenAI's): read the raw events, as a client of incomplete responses must.
    events = list(caller.oai.responses.create(**asked, stream=True))
    types = [event.type for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == f"response.{status}" and types.count("response.output_text.delta") > 1
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    (done,) = [e.text for e in events if e.type == "response.output_text.done"]
    final = events[-1].response
    assert deltas == done == final.output_text == answer
    assert final.status == status and final.usage is not None and final.usage.output_tokens == tokens
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert_rows(caller, "responses", finish, tokens)


@pytest.mark.parametrize(("text", "system", "max_tokens"), CASES, ids=IDS)
def test_messages_create_and_stream(
    caller: Caller, engine: OnnxEngine, text: str, system: str | None, max_tokens: int
) -> None:
    answer, tokens, finish = expected(engine, text, system, max_tokens)
    asked: dict[str, Any] = {
        "model": "tiny",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": text}],
        # This SDK no longer takes `temperature` as an argument; the API (and Warden) still do.
        "extra_body": {"temperature": 0},
    }
    if system:
        asked["system"] = system
    message = caller.claude.messages.create(**asked)
    assert message.type == "message" and message.role == "assistant" and message.model == "tiny"
    assert [block.type for block in message.content] == ["text"] and message.content[0].text == answer
    assert message.stop_reason == MESSAGES[finish] and message.stop_sequence is None
    assert message.usage.output_tokens == tokens and message.usage.input_tokens > 0

    with caller.claude.messages.stream(**asked) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == answer and final.content[0].text == answer
    assert final.stop_reason == MESSAGES[finish] and final.usage.output_tokens == tokens
    assert_rows(caller, "messages", finish, tokens)


TOOL = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}
CLAUDE_TOOL = {"name": "lookup", "input_schema": {"type": "object", "properties": {}}}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_tools_are_refused_with_a_clear_400(caller: Caller, stream: bool) -> None:
    """The local model refuses tools; each API says so in its own error shape, naming the parameter."""
    with pytest.raises(openai.BadRequestError) as refused:
        caller.oai.responses.create(model="tiny", input="look it up", tools=[TOOL], stream=stream)
    error = refused.value.body
    assert isinstance(error, dict) and error["type"] == "invalid_request_error" and error["param"] == "tools"
    assert "tools are not supported by this local model" in error["message"]

    with pytest.raises(anthropic.BadRequestError) as refused_messages:
        asked: dict[str, Any] = {
            "model": "tiny",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "look it up"}],
            "tools": [CLAUDE_TOOL],
        }
        if stream:
            with caller.claude.messages.stream(**asked) as events:
                events.get_final_message()
        else:
            caller.claude.messages.create(**asked)
    body = refused_messages.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "tools are not supported by this local model" in body["error"]["message"]

    rows = caller.rows()
    assert [(r["route"], r["status"], r["error_class"]) for r in rows] == [
        ("responses", 400, "upstream_400"),
        ("messages", 400, "upstream_400"),
    ]
