"""Why a model stopped, in each API's words.

| Chat `finish_reason`          | Anthropic `stop_reason` | Responses `status` (`incomplete_details.reason`) |
|-------------------------------|-------------------------|--------------------------------------------------|
| `stop`                        | `end_turn`              | `completed`                                      |
| `length`                      | `max_tokens`            | `incomplete` (`max_output_tokens`)               |
| `tool_calls`, `function_call` | `tool_use`              | `completed`                                      |
| `content_filter`              | `refusal`               | `incomplete` (`content_filter`)                  |

From Anthropic, `stop_sequence` and `pause_turn` also become `stop`, and `model_context_window_exceeded`
becomes `length`.

Chat says `stop` both for the end of a turn and for a matched stop sequence (without saying which), so
it becomes `end_turn` with `stop_sequence: null`. A missing or unknown reason counts as a normal stop
in answers; a stream that never said why it ended is handled by its translator.
"""

from __future__ import annotations

from typing import Any

_CHAT_FROM_ANTHROPIC = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_ANTHROPIC_FROM_CHAT = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def chat_from_anthropic(stop_reason: Any) -> str:
    return _CHAT_FROM_ANTHROPIC.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def anthropic_from_chat(finish_reason: Any) -> str:
    return (
        _ANTHROPIC_FROM_CHAT.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"
    )


def responses_from_chat(finish_reason: Any) -> tuple[str, dict[str, str] | None]:
    """A response's `status` and `incomplete_details` for a chat finish reason."""
    reason = _INCOMPLETE.get(finish_reason) if isinstance(finish_reason, str) else None
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)
