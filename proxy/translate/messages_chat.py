"""An Anthropic Messages client served by a Chat Completions upstream.

Request (messages -> chat):

| Anthropic Messages                         | Chat Completions                                           |
|--------------------------------------------|------------------------------------------------------------|
| `model`                                    | `model`, unchanged                                         |
| `system` (string or text blocks)           | a leading `system` message                                 |
| `user` text and image blocks               | a `user` message (see `content`)                           |
| `user` `tool_result` blocks                | `tool` messages, before the user message with the rest     |
| `assistant` text and `tool_use` blocks     | an `assistant` message with `content` and `tool_calls`     |
| `max_tokens`                               | `max_completion_tokens`                                    |
| `temperature`, `top_p`                     | the same                                                   |
| `stop_sequences`                           | `stop`                                                     |
| `tools`, `tool_choice`                     | see `tools`                                                |
| `metadata.user_id`                         | `user`                                                     |
| `stream`                                   | `stream`, and `stream_options.include_usage: true`         |

Dropped: thinking and redacted_thinking blocks of earlier assistant turns (chat cannot take them back),
`cache_control` (a caching hint), a tool_result's `is_error` (chat has no such flag; the result text
still says what went wrong), `service_tier`, and `top_k`: a sampling hint that Chat Completions lacks
(some servers take it as an extension, others reject unknown fields), refusing it would fail requests
whose answers would be no less valid. `thinking` is accepted when disabled and refused otherwise (chat
has no thinking budget). Refused: documents, images in tool results, server tools and their blocks,
`container`, `mcp_servers` and any other field this module does not know.

Answer (chat -> messages): `content` -> a text block, `refusal` -> a text block with stop_reason
`refusal`, `tool_calls` -> `tool_use` blocks (arguments parsed, see `tools`); `finish_reason` per
`reasons`, usage per `usage`, id `chatcmpl-x` -> `msg_x`. Only the first choice is read (the request
never asks for more). Reasoning text that some chat servers add (`reasoning_content`) is dropped:
Anthropic thinking blocks need a signature only Anthropic can make.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.translate import content, ids, reasons, tools, usage
from proxy.translate.base import CHAT, MESSAGES, StreamTranslator, Translation, Untranslatable
from proxy.translate.errors import anthropic_error
from proxy.translate.fields import FieldRules, as_dict, as_list, first_choice
from proxy.translate.messages_chat_stream import ChatToMessagesStream

_RULES = FieldRules(
    target="the Chat Completions API",
    mapped=frozenset(
        {"model", "max_tokens", "messages", "system", "temperature", "top_p", "stream"}
        | {"stop_sequences", "tools", "tool_choice", "metadata"}
    ),
    dropped=frozenset({"top_k", "service_tier"}),
    harmless={"thinking": ({"type": "disabled"},)},
    why={
        "thinking": "Extended thinking cannot be requested through this model's Chat Completions API.",
        "container": "Containers exist at Anthropic only.",
        "mcp_servers": "MCP servers are run by Anthropic only.",
    },
)


@dataclass(frozen=True)
class MessagesToChat(Translation):
    client: str = MESSAGES
    upstream: str = CHAT
    upstream_path: str = "chat/completions"

    def request(self, payload: dict[str, Any]) -> dict[str, Any]:
        _RULES.check(payload)
        messages: list[dict[str, Any]] = []
        if payload.get("system"):
            messages.append(
                {"role": "system", "content": content.from_blocks(payload["system"], "system", images=False)}
            )
        turns = payload.get("messages")
        if not isinstance(turns, list):
            raise Untranslatable("messages must be a list.", "messages")
        for index, turn in enumerate(turns):
            where = f"messages[{index}]"
            role = turn.get("role") if isinstance(turn, dict) else None
            if role == "user":
                messages += _user(turn.get("content"), where)
            elif role == "assistant":
                messages.append(_assistant(turn.get("content"), where))
            else:
                raise Untranslatable("Messages must have the role user or assistant.", f"{where}.role")
        out: dict[str, Any] = {"model": payload.get("model"), "messages": messages}
        if payload.get("max_tokens") is not None:
            out["max_completion_tokens"] = payload["max_tokens"]
        for key in ("temperature", "top_p"):
            if payload.get(key) is not None:
                out[key] = payload[key]
        if payload.get("stop_sequences"):
            out["stop"] = payload["stop_sequences"]
        if payload.get("tools"):
            out["tools"] = tools.tools_to_chat(payload["tools"])
            if payload.get("tool_choice") is not None:
                out["tool_choice"], parallel = tools.tool_choice_to_chat(payload["tool_choice"])
                if parallel is not None:
                    out["parallel_tool_calls"] = parallel
        metadata = payload.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
            out["user"] = metadata["user_id"]
        if payload.get("stream"):
            out["stream"] = True
            out["stream_options"] = {"include_usage": True}
        return out

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        choice = first_choice(body)
        message = as_dict(choice.get("message"))
        blocks: list[dict[str, Any]] = []
        text = content.joined_text(message.get("content"))
        if text:
            blocks.append({"type": "text", "text": text})
        stop_reason = reasons.anthropic_from_chat(choice.get("finish_reason"))
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal:
            blocks.append({"type": "text", "text": refusal})
            stop_reason = "refusal"
        for call in as_list(message.get("tool_calls")):
            function = as_dict(as_dict(call).get("function"))
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call.get("id") or "toolu_" + ids.core(None),
                    "name": str(function.get("name") or ""),
                    "input": tools.answer_input(function.get("arguments")),
                }
            )
        tokens = usage.from_chat(body.get("usage")) or usage.Tokens()
        return {
            "id": ids.message_id(body.get("id")),
            "type": "message",
            "role": "assistant",
            "model": body.get("model") or "",
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage.to_anthropic(tokens),
        }

    def stream(self, request: dict[str, Any]) -> StreamTranslator:
        return ChatToMessagesStream(request)

    def error(self, status: int, body: Any) -> dict[str, Any]:
        return anthropic_error(status, body)


def _user(blocks: Any, where: str) -> list[dict[str, Any]]:
    """Chat messages for a user turn: its tool results first (chat wants them right after the call)."""
    if isinstance(blocks, str):
        return [{"role": "user", "content": blocks}]
    if not isinstance(blocks, list):
        raise Untranslatable("Message content must be a string or a list of blocks.", f"{where}.content")
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for index, block in enumerate(blocks):
        param = f"{where}.content[{index}]"
        if isinstance(block, dict) and block.get("type") == "tool_result":
            results.append(_tool_message(block, param))
        else:
            parts.append(content.part_of(block, param))
    return results + ([{"role": "user", "content": content.simplest(parts)}] if parts else [])


def _tool_message(block: dict[str, Any], param: str) -> dict[str, Any]:
    if not isinstance(block.get("tool_use_id"), str):
        raise Untranslatable("A tool_result needs its tool_use_id.", f"{param}.tool_use_id")
    body = block.get("content")
    return {
        "role": "tool",
        "tool_call_id": block["tool_use_id"],
        "content": "" if body is None else content.from_blocks(body, f"{param}.content", images=False),
    }


def _assistant(blocks: Any, where: str) -> dict[str, Any]:
    if isinstance(blocks, str):
        return {"role": "assistant", "content": blocks}
    if not isinstance(blocks, list):
        raise Untranslatable("Message content must be a string or a list of blocks.", f"{where}.content")
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for index, block in enumerate(blocks):
        param = f"{where}.content[{index}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind in ("thinking", "redacted_thinking"):
            continue
        if kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise Untranslatable("A tool_use block needs an id and a name.", param)
            arguments = tools.input_to_arguments(block.get("input"))
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": arguments},
                }
            )
        else:
            parts.append(content.part_of(block, param, images=False))
    message: dict[str, Any] = {"role": "assistant", "content": content.simplest(parts) if parts else None}
    if calls:
        message["tool_calls"] = calls
    elif not parts:
        message["content"] = ""
    return message
