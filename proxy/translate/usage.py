"""Token usage between the three APIs.

Chat's `prompt_tokens` and Responses' `input_tokens` count every prompt token, with the cache reads
(`cached_tokens`) and cache writes (`cache_write_tokens`) among them; Anthropic's `input_tokens` counts
only the rest, and `cache_read_input_tokens` and `cache_creation_input_tokens` apart. So Anthropic ->
OpenAI adds them up and OpenAI -> Anthropic takes them out: the total is the same on both sides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Tokens:
    input: int = 0  # every prompt token, cached or not
    output: int = 0
    cached: int = 0  # the part of `input` read from a cache
    cache_write: int = 0  # the part of `input` written to a cache
    reasoning: int = 0  # the part of `output` spent reasoning


def from_chat(usage: Any) -> Tokens | None:
    if not isinstance(usage, Mapping):
        return None
    prompt = usage.get("prompt_tokens_details")
    prompt = prompt if isinstance(prompt, Mapping) else {}
    completion = usage.get("completion_tokens_details")
    completion = completion if isinstance(completion, Mapping) else {}
    return Tokens(
        input=_count(usage.get("prompt_tokens")),
        output=_count(usage.get("completion_tokens")),
        cached=_count(prompt.get("cached_tokens")),
        cache_write=_count(prompt.get("cache_write_tokens")),
        reasoning=_count(completion.get("reasoning_tokens")),
    )


def from_anthropic(usage: Any) -> Tokens | None:
    if not isinstance(usage, Mapping):
        return None
    cache_read = _count(usage.get("cache_read_input_tokens"))
    cache_write = _count(usage.get("cache_creation_input_tokens"))
    return Tokens(
        input=_count(usage.get("input_tokens")) + cache_read + cache_write,
        output=_count(usage.get("output_tokens")),
        cached=cache_read,
        cache_write=cache_write,
    )


def to_chat(tokens: Tokens) -> dict[str, Any]:
    prompt = {"cached_tokens": tokens.cached}
    if tokens.cache_write:
        prompt["cache_write_tokens"] = tokens.cache_write
    return {
        "prompt_tokens": tokens.input,
        "completion_tokens": tokens.output,
        "total_tokens": tokens.input + tokens.output,
        "prompt_tokens_details": prompt,
        "completion_tokens_details": {"reasoning_tokens": tokens.reasoning},
    }


def to_anthropic(tokens: Tokens) -> dict[str, Any]:
    return {
        "input_tokens": max(tokens.input - tokens.cached - tokens.cache_write, 0),
        "output_tokens": tokens.output,
        "cache_read_input_tokens": tokens.cached,
        "cache_creation_input_tokens": tokens.cache_write,
    }


def to_responses(tokens: Tokens) -> dict[str, Any]:
    return {
        "input_tokens": tokens.input,
        "output_tokens": tokens.output,
        "total_tokens": tokens.input + tokens.output,
        "input_tokens_details": {"cached_tokens": tokens.cached, "cache_write_tokens": tokens.cache_write},
        "output_tokens_details": {"reasoning_tokens": tokens.reasoning},
    }


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value
