"""Token usage between the three APIs.

Chat's `prompt_tokens` and Responses' `input_tokens` include cached tokens; Anthropic's `input_tokens`
does not (cache reads and cache writes are counted apart). So Anthropic -> OpenAI adds them up, and
OpenAI -> Anthropic takes the cached share out into `cache_read_input_tokens`: the total is the same
on both sides.
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
    reasoning: int = 0  # the part of `output` spent reasoning


def from_chat(usage: Any) -> Tokens | None:
    if not isinstance(usage, Mapping):
        return None
    prompt_details = usage.get("prompt_tokens_details")
    output_details = usage.get("completion_tokens_details")
    return Tokens(
        input=_count(usage.get("prompt_tokens")),
        output=_count(usage.get("completion_tokens")),
        cached=_count(prompt_details.get("cached_tokens")) if isinstance(prompt_details, Mapping) else 0,
        reasoning=_count(output_details.get("reasoning_tokens"))
        if isinstance(output_details, Mapping)
        else 0,
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
    )


def to_chat(tokens: Tokens) -> dict[str, Any]:
    return {
        "prompt_tokens": tokens.input,
        "completion_tokens": tokens.output,
        "total_tokens": tokens.input + tokens.output,
        "prompt_tokens_details": {"cached_tokens": tokens.cached},
        "completion_tokens_details": {"reasoning_tokens": tokens.reasoning},
    }


def to_anthropic(tokens: Tokens) -> dict[str, Any]:
    return {
        "input_tokens": max(tokens.input - tokens.cached, 0),
        "output_tokens": tokens.output,
        "cache_read_input_tokens": tokens.cached,
        "cache_creation_input_tokens": 0,
    }


def to_responses(tokens: Tokens) -> dict[str, Any]:
    return {
        "input_tokens": tokens.input,
        "output_tokens": tokens.output,
        "total_tokens": tokens.input + tokens.output,
        "input_tokens_details": {"cached_tokens": tokens.cached},
        "output_tokens_details": {"reasoning_tokens": tokens.reasoning},
    }


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value
