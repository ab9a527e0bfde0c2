"""OnnxUpstream speaks OpenAI's wire format: JSON bodies, SSE chunks, usage, errors."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from proxy.upstreams.local.engine import OnnxEngine
from proxy.upstreams.local.sampling import SamplingParams
from proxy.upstreams.local.upstream import OnnxUpstream
from tests.support import chat

MESSAGES = [{"role": "user", "content": "What is a decorator?"}]


@pytest.fixture(scope="module")
def upstream(engine: OnnxEngine) -> OnnxUpstream:
    return OnnxUpstream("local", engine, "tiny-chat", {"temperature": 0.0, "max_tokens": 16})


def _body(**payload: Any) -> bytes:
    return json.dumps({"model": "tiny-chat", **payload}).encode()


def _events(raw: bytes) -> list[Any]:
    assert raw.endswith(b"data: [DONE]\n\n")
    events = raw.split(b"\n\n")
    assert events[-1] == b""
    out = []
    for event in events[:-1]:
        assert event.startswith(b"data: ") and b"\n" not in event
        data = event[len(b"data: ") :]
        out.append(data.decode() if data == b"[DONE]" else json.loads(data))
    assert out[-1] == "[DONE]"
    return out[:-1]


def test_chat_completion_json(upstream: OnnxUpstream, engine: OnnxEngine) -> None:
    started = time.perf_counter()
    reply = upstream.complete("chat/completions", _body(messages=MESSAGES), "req-1")
    assert reply.status == 200 and reply.headers["content-type"] == "application/json"
    assert 0 < reply.wait_s <= time.perf_counter() - started
    completion = ChatCompletion.model_validate_json(reply.body)
    assert completion.id.startswith("chatcmpl-") and completion.object == "chat.completion"
    assert completion.model == "tiny-chat"
    (choice,) = completion.choices
    expected = engine.generate_text(
        chat(engine, MESSAGES[0]["content"]), SamplingParams(temperature=0.0, max_tokens=16)
    )
    assert choice.message.role == "assistant" and choice.message.content == expected
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == len(engine.encode(chat(engine, MESSAGES[0]["content"])))
    assert choice.finish_reason == "length" and usage.completion_tokens == 16
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_chat_stream_chunks_and_usage(upstream: OnnxUpstream) -> None:
    body = _body(messages=MESSAGES, stream=True, stream_options={"include_usage": True}, max_tokens=12)
    stream = upstream.stream("chat/completions", body, "req-2")
    try:
        assert stream.status == 200 and stream.headers["content-type"].startswith("text/event-stream")
        events = _events(stream.read_all())
    finally:
        stream.close()
    chunks = [ChatCompletionChunk.model_validate(e) for e in events]
    assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    *content, final, usage_chunk = chunks
    assert all(c.choices[0].finish_reason is None and c.usage is None for c in content)
    assert final.choices[0].finish_reason == "length" and final.choices[0].delta.content is None
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == 12
    whole = upstream.complete("chat/completions", _body(messages=MESSAGES, max_tokens=12), "req-3")
    text = "".join(c.choices[0].delta.content or "" for c in content)
    assert text == json.loads(whole.body)["choices"][0]["message"]["content"]


def test_stream_without_include_usage_has_no_usage(upstream: OnnxUpstream) -> None:
    stream = upstream.stream("chat/completions", _body(messages=MESSAGES, stream=True), "req-4")
    events = _events(stream.read_all())
    stream.close()
    assert all("usage" not in e and e["choices"] for e in events)
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_n_choices_use_seed_plus_index(upstream: OnnxUpstream) -> None:
    def ask(**extra: Any) -> dict[str, Any]:
        body = _body(messages=MESSAGES, temperature=1.0, max_tokens=10, **extra)
        return json.loads(upstream.complete("chat/completions", body, "r").body)

    both = ask(n=2, seed=41)
    contents = [c["message"]["content"] for c in both["choices"]]
    assert [c["index"] for c in both["choices"]] == [0, 1]
    assert contents == [
        ask(seed=41)["choices"][0]["message"]["content"],
        ask(seed=42)["choices"][0]["message"]["content"],
    ]
    assert contents[0] != contents[1]
    assert both["usage"]["completion_tokens"] == 20
    assert both["usage"]["prompt_tokens"] == ask(seed=1)["usage"]["prompt_tokens"]


def test_completions_route_with_string_prompt_and_stop(upstream: OnnxUpstream, engine: OnnxEngine) -> None:
    full = json.loads(upstream.complete("completions", _body(prompt="def main():"), "r").body)
    completion = Completion.model_validate(full)
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    text = completion.choices[0].text
    assert text == engine.generate_text("def main():", SamplingParams(temperature=0.0, max_tokens=16))
    stop = text[3:6]
    cut = json.loads(upstream.complete("completions", _body(prompt="def main():", stop=[stop]), "r").body)
    assert cut["choices"][0]["text"] == text[: text.find(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"
    stream = upstream.stream("completions", _body(prompt="def main():", stream=True, stop=stop), "r")
    events = _events(stream.read_all())
    assert all(e["object"] == "text_completion" for e in events)
    assert "".join(e["choices"][0]["text"] for e in events) == text[: text.find(stop)]
    assert events[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("route", "payload", "param"),
    [
        ("chat/completions", {"messages": MESSAGES, "temperature": 3}, "temperature"),
        ("chat/completions", {"messages": MESSAGES, "top_p": 0}, "top_p"),
        ("chat/completions", {"messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
        ("chat/completions", {"messages": MESSAGES, "max_tokens": "5"}, "max_tokens"),
        ("chat/completions", {"messages": MESSAGES, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ("chat/completions", {"messages": MESSAGES, "n": 0}, "n"),
        ("chat/completions", {"messages": MESSAGES, "seed": True}, "seed"),
        ("chat/completions", {"messages": MESSAGES, "tools": [{"type": "function"}]}, "tools"),
        ("chat/completions", {"messages": MESSAGES, "max_tokens": 5000}, "messages"),
        ("chat/completions", {"messages": []}, "messages"),
        (
            "chat/completions",
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content",
        ),
        ("completions", {"prompt": ""}, "prompt"),
        ("completions", {"prompt": ["a", "b"]}, "prompt"),
    ],
)
def test_bad_parameters_get_an_openai_400(
    upstream: OnnxUpstream, route: str, payload: dict, param: str
) -> None:
    reply = upstream.complete(route, _body(**payload), "r")
    assert reply.status == 400
    error = json.loads(reply.body)["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]
    stream = upstream.stream(route, _body(stream=True, **payload), "r")
    assert stream.status == 400 and json.loads(stream.read_all())["error"]["param"] == param


def test_not_json_embeddings_and_unknown_routes(upstream: OnnxUpstream) -> None:
    assert upstream.complete("chat/completions", b"{nope", "r").status == 400
    assert upstream.complete("chat/completions", b"[]", "r").status == 400
    # The forwarder sends embeddings through `complete`, like any route: a local model has no such route.
    embed = upstream.complete("embeddings", _body(input="hi"), "r")
    assert embed.status == 404 and json.loads(embed.body)["error"]["code"] == "unknown_url"
    assert upstream.complete("images/generations", _body(prompt="x"), "r").status == 404


def test_closing_a_stream_early_cancels_generation(upstream: OnnxUpstream, engine: OnnxEngine) -> None:
    body = _body(messages=MESSAGES, stream=True, max_tokens=900, temperature=0.0)
    steps = engine.stats()["steps"]
    stream = upstream.stream("chat/completions", body, "r")
    next(stream.chunks)
    stream.close()
    # Also when nobody read a single chunk.
    untouched = upstream.stream("chat/completions", body, "r")
    untouched.close()
    deadline = time.monotonic() + 5
    while engine.stats()["running"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.stats()["running"] == 0
    # Uncancelled, they would have run about 340 greedy steps before eos.
    assert engine.stats()["steps"] - steps < 100


def test_defaults_are_validated(engine: OnnxEngine) -> None:
    with pytest.raises(ValueError, match="frequency"):
        OnnxUpstream("local", engine, "m", {"frequency": 1})
