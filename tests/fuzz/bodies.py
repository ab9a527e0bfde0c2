"""JSON bodies shaped like each route's own, and the mutations that make them hostile while keeping
enough of their shape to get past validation: into the policies, the translations and the upstream."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

from tests.fuzz import values

# Only models the fake answers normally: its failure models (fake-500, fake-hang...) are left out of
# the config, so any 5xx is Warden's own.
MODELS = ("gpt-fake", "fake-tools", "text-embed-fake", "claude-fake", "claude-tools", "chat-only")


# -- mutation --------------------------------------------------------------------------------------


def _containers(document: Any, out: list[Any]) -> list[Any]:
    if isinstance(document, dict):
        out.append(document)
        for item in document.values():
            _containers(item, out)
    elif isinstance(document, list):
        out.append(document)
        for item in document:
            _containers(item, out)
    return out


def _leaves(document: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """(container, key) of every scalar inside `document`."""
    items = document.items() if isinstance(document, dict) else enumerate(document)
    for key, item in items:
        if isinstance(item, dict | list):
            _leaves(item, out)
        else:
            out.append((document, key))
    return out


def mutate(rng: random.Random, document: Any) -> Any:
    """One change to a copy of `document`: a hostile value of the same type where one was (the shape
    stays valid, so the value reaches the policies, the translations and the upstream), a field of
    the wrong type, a field gone, one added."""
    document = copy.deepcopy(document)
    if not isinstance(document, dict | list):
        return values.value(rng)
    leaves = _leaves(document, [])
    if leaves and rng.random() < 0.4:
        holder, key = rng.choice(leaves)
        old = holder[key]
        if isinstance(old, str):
            holder[key] = values.text(rng)
        elif isinstance(old, int | float) and not isinstance(old, bool):
            holder[key] = rng.choice(values.NUMBERS)
        else:
            holder[key] = values.scalar(rng)
        return document
    target = rng.choice(_containers(document, []))
    roll = rng.random()
    if isinstance(target, dict):
        keys = list(target)
        if keys and roll < 0.6:
            target[rng.choice(keys)] = values.value(rng)
        elif keys and roll < 0.8:
            del target[rng.choice(keys)]
        else:
            target[rng.choice((*FIELD_NAMES, values.text(rng)[:40]))] = values.value(rng)
    elif target and roll < 0.6:
        target[rng.randrange(len(target))] = values.value(rng)
    elif target and roll < 0.8:
        del target[rng.randrange(len(target))]
    else:
        target.append(values.value(rng))
    return document


# -- bodies shaped like each route's own ------------------------------------------------------------

FIELD_NAMES = (
    "model", "messages", "stream", "n", "max_tokens", "max_output_tokens", "tools", "tool_choice",
    "response_format", "stream_options", "logprobs", "top_logprobs", "user", "temperature", "input",
    "instructions", "previous_response_id", "conversation", "store", "text", "reasoning", "system",
    "thinking", "stop_sequences", "metadata", "prompt", "content", "role", "type", "arguments",
    "tool_calls", "function_call", "name", "team", "role", "reason", "since", "until", "teams",
    "transcripts", "subject", "all_of_tenant", "stage", "policy", "route", "password", "username",
    "expires_in_days", "models", "format", "project", "include_usage", "modalities", "logit_bias",
)  # fmt: skip

Base = Callable[[random.Random], Any]


def _model(rng: random.Random, *preferred: str) -> str:
    if rng.random() < 0.85:
        return rng.choice(preferred or MODELS)
    return rng.choice((*MODELS, values.text(rng)[:300] or "x"))


def _chat(rng: random.Random) -> dict[str, Any]:
    model = _model(rng, "gpt-fake", "fake-tools", "claude-fake", "claude-tools", "chat-only")
    arguments = rng.choice(
        ('{"text": "jane.roe@example.com"}', "not json", "[" * 5000, '{"a": ' * 300 + "1" + "}" * 300, "")
    )
    messages: list[Any] = [{"role": "user", "content": rng.choice(("hi jane.roe@example.com", "hello"))}]
    extra = rng.random()
    if extra < 0.3:
        messages = [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "call it"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "result 4111 1111 1111 1111"},
        ]
    elif extra < 0.45:
        messages[0]["content"] = [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
            {"type": "fuzz_unknown", "text": "?"},
        ]
    body: dict[str, Any] = {"model": model, "messages": messages}
    for name, make in (
        ("stream", lambda: rng.choice((True, False))),
        ("n", lambda: rng.choice((1, 2, 128))),
        ("max_tokens", lambda: rng.choice((1, 64, 4096))),
        (
            "tools",
            lambda: [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        ),
        (
            "tool_choice",
            lambda: rng.choice(("auto", "none", {"type": "function", "function": {"name": "f"}})),
        ),
        ("response_format", lambda: rng.choice(({"type": "json_object"}, {"type": "text"}))),
        ("logprobs", lambda: True),
        ("user", lambda: rng.choice(("subject-1", "jane.roe@example.com"))),
        ("temperature", lambda: 0.5),
    ):
        if rng.random() < 0.2:
            body[name] = make()
    if body.get("stream") and rng.random() < 0.5:
        body["stream_options"] = {"include_usage": True}
    return body


def _completions(rng: random.Random) -> dict[str, Any]:
    prompt = rng.choice(("say hi", ["a", "b"], [1, 2, 3], [[1, 2]]))
    body = {"model": _model(rng, "gpt-fake", "chat-only"), "prompt": prompt}
    if rng.random() < 0.3:
        body["stream"] = True
    return body


def _embeddings(rng: random.Random) -> dict[str, Any]:
    return {
        "model": _model(rng, "text-embed-fake", "gpt-fake"),
        "input": rng.choice(("hello", ["a", "b"], [1, 2])),
    }


def _responses(rng: random.Random) -> dict[str, Any]:
    model = _model(rng, "gpt-fake", "chat-only", "claude-fake", "fake-tools")
    arguments = rng.choice(('{"x": 1}', "not json", "[" * 3000, ""))
    items: Any = rng.choice(
        (
            "hello jane.roe@example.com",
            [{"role": "user", "content": "hi"}],
            [
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "call f"}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": arguments},
                {"type": "function_call_output", "call_id": "c1", "output": "done"},
            ],
            [{"type": "item_reference", "id": "msg_1"}, {"type": "fuzz_unknown"}],
            [
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                        {"type": "input_file", "file_id": "file-1"},
                    ],
                }
            ],
            [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "x"}]}],
        )
    )
    body: dict[str, Any] = {"model": model, "input": items}
    for name, make in (
        ("instructions", lambda: "Be brief."),
        ("stream", lambda: rng.choice((True, False))),
        ("tools", lambda: [{"type": "function", "name": "f", "parameters": {"type": "object"}}]),
        ("text", lambda: {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}}),
        ("reasoning", lambda: {"effort": "low", "summary": "auto"}),
        ("previous_response_id", lambda: "resp_1"),
        ("store", lambda: rng.choice((True, False))),
        ("max_output_tokens", lambda: rng.choice((16, 10**30))),
        ("truncation", lambda: "auto"),
    ):
        if rng.random() < 0.2:
            body[name] = make()
    return body


def _messages(rng: random.Random) -> dict[str, Any]:
    model = _model(rng, "claude-fake", "claude-tools", "gpt-fake", "chat-only")
    content: Any = rng.choice(
        (
            "hi jane.roe@example.com",
            [{"type": "text", "text": "hi"}],
            [
                {"type": "text", "text": "use it"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}},
            ],
            [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "r"}]}],
            [{"type": "fuzz_unknown"}, {"type": "text"}, {"text": "no type"}],
        )
    )
    messages: list[Any] = [{"role": "user", "content": content}]
    if rng.random() < 0.3:
        messages = [
            {"role": "user", "content": "call it"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": "jane.roe@example.com"}},
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
        ]
    body: dict[str, Any] = {"model": model, "max_tokens": rng.choice((1, 64, 10**30)), "messages": messages}
    for name, make in (
        ("system", lambda: rng.choice(("Be brief.", [{"type": "text", "text": "Be brief."}]))),
        ("stream", lambda: rng.choice((True, False))),
        ("tools", lambda: [{"name": "f", "input_schema": {"type": "object"}}]),
        ("tool_choice", lambda: rng.choice(({"type": "auto"}, {"type": "tool", "name": "f"}, {"type": "x"}))),
        ("thinking", lambda: rng.choice(({"type": "enabled", "budget_tokens": 1024}, {"type": "disabled"}))),
        ("stop_sequences", lambda: ["\n\n"]),
        ("metadata", lambda: {"user_id": "u1"}),
        ("top_k", lambda: 5),
    ):
        if rng.random() < 0.2:
            body[name] = make()
    return body


def _evaluate(rng: random.Random) -> dict[str, Any]:
    return {
        "text": "mail jane.roe@example.com",
        "stage": rng.choice(("input", "output")),
        "route": "chat.completions",
    }


def _exports(rng: random.Random) -> dict[str, Any]:
    return {
        "since": "2026-11-10T00:00:00Z",
        "until": "2026-11-11T00:00:00Z",
        "format": rng.choice(("jsonl", "csv", "parquet")),
        "teams": ["alpha"],
        "transcripts": rng.random() < 0.3,
        "reason": "fuzzing the export route",
    }


BASES: dict[tuple[str, str], Base] = {
    **{
        ("POST", f"{prefix}/{path}"): base
        for prefix in ("/v1", "")
        for path, base in (
            ("chat/completions", _chat),
            ("completions", _completions),
            ("embeddings", _embeddings),
            ("responses", _responses),
            ("messages", _messages),
            ("messages/count_tokens", _messages),
        )
    },
    ("POST", "/v1/warden/evaluate"): _evaluate,
    ("POST", "/api/teams"): lambda rng: {"name": f"team-{rng.randrange(10**6)}"},
    ("POST", "/api/users"): lambda rng: {
        "username": f"fz{rng.randrange(10**6)}",
        "password": "short",
        "role": rng.choice(("viewer", "admin", "wizard")),
        "team": rng.choice((None, "alpha")),
    },
    ("POST", "/api/users/<username>/roles"): lambda rng: {"role": "viewer", "team": "alpha"},
    ("DELETE", "/api/users/<username>/roles"): lambda rng: {"role": "viewer", "team": "alpha"},
    ("POST", "/api/keys"): lambda rng: {
        "team": "alpha",
        "name": "fz",
        "project": "p",
        "models": ["gpt-fake"],
        "expires_in_days": 7,
    },
    ("POST", "/api/transcripts/<request_id>"): lambda rng: {"reason": "looking into a complaint"},
    ("POST", "/api/erasure"): lambda rng: {"subject": "fz-subject"},
    ("POST", "/api/exports"): _exports,
}
