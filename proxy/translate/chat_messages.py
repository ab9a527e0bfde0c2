"""A Chat Completions client served by an Anthropic Messages upstream.

Request (chat -> messages):

| Chat Completions                          | Anthropic Messages                                           |
|-------------------------------------------|--------------------------------------------------------------|
| `model`                                   | `model`, unchanged                                           |
| `system` and `developer` messages         | `system` text blocks, in order (wherever they stood)         |
| `user` messages                           | `user` turns (text and images, see `content`)                |
| `assistant` content and `tool_calls`      | `assistant` text and `tool_use` blocks (`arguments` parsed)  |
| `tool` messages                           | `tool_result` blocks in a `user` turn                        |
| `max_completion_tokens` / `max_tokens`    | `max_tokens` (4096 when the request has neither)             |
| `temperature`, `top_p`                    | the same (unchanged; Anthropic accepts temperature 0-1 only) |
| `stop` (string or list)                   | `stop_sequences`                                             |
| `tools`, `tool_choice`, `parallel_tool_calls` | see `tools`                                              |
| `user` (or `safety_identifier`)           | `metadata.user_id`                                           |
| `stream`                                  | `stream` (`stream_options` is read by the stream translator) |

Consecutive turns of one role are merged (tool results and the user text after them share a turn, as
Anthropic requires) and a message's `name` is dropped. Dropped without refusal, since they change
neither the format nor what the model is asked: `frequency_penalty`, `presence_penalty`, `seed`,
`store`, `metadata`, `service_tier`, `prediction`, `prompt_cache_key`, `n: 1`, `logprobs: false`.
Refused (Untranslatable): `n > 1`, `logprobs`, `top_logprobs`, non-text `modalities`, `audio`,
`response_format` other than text (Anthropic has no JSON mode or schema), `logit_bias`,
`reasoning_effort`, `verbosity`, `web_search_options`, the legacy `functions`/`function_call`, and
any other field this module does not know.

Answer (messages -> chat): text blocks joined into `content` (null when there is none), `tool_use`
blocks into `tool_calls` (`input` serialised), thinking blocks dropped; `stop_reason` per `reasons`,
usage per `usage`, id `msg_x` -> `chatcmpl-x`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from proxy.translate import content, ids, reasons, tools, usage
from proxy.translate.base import CHAT, MESSAGES, StreamTranslator, Translation, Untranslatable
from proxy.translate.chat_messages_stream import MessagesToChatStream
from proxy.translate.errors import openai_error
from proxy.translate.fields import FieldRules, as_dict, as_list

DEFAULT_MAX_TOKENS = 4096

_RULES = FieldRules(
    target="Anthropic's Messages API",
    mapped=frozenset(
        {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop"}
        | {"stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls", "user"}
        | {"safety_identifier"}
    ),
    dropped=frozenset(
        {"frequency_penalty", "presence_penalty", "seed", "store", "metadata", "service_tier"}
        | {"prediction", "prompt_cache_key"}
    ),
    harmless={
        "n": (1,),
        "logprobs": (False,),
        "top_logprobs": (0,),
        "modalities": (["text"],),
        "response_format": ({"type": "text"},),
        "logit_bias": ({},),
    },
    why={
        "n": "Anthropic's Messages API returns one choice per request; send n: 1.",
        "logprobs": "Anthropic's Messages API does not return log probabilities.",
        "top_logprobs": "Anthropic's Messages API does not return log probabilities.",
        "modalities": "This model answers in text only.",
        "audio": "This model answers in text only.",
        "response_format": "Anthropic's Messages API has no JSON mode or JSON schema output.",
        "logit_bias": "Anthropic's Messages API has no logit bias.",
        "functions": "Legacy functions are not translated; use tools.",
        "function_call": "Legacy function_call is not translated; use tool_choice.",
    },
)


@dataclass(frozen=True)
class ChatToMessages(Translation):
    client: str = CHAT
    upstream: str = MESSAGES
    upstream_path: str = "messages"

    def request(self, payload: dict[str, Any]) -> dict[str, Any]:
        _RULES.check(payload)
        system, turns = _turns(payload.get("messages"))
        limit = payload.get("max_completion_tokens")
        limit = payload.get("max_tokens") if limit is None else limit
        out: dict[str, Any] = {
            "model": payload.get("model"),
            "max_tokens": DEFAULT_MAX_TOKENS if limit is None else limit,
            "messages": turns,
        }
        if system:
            out["system"] = system
        for key in ("temperature", "top_p", "stream"):
            if payload.get(key) is not None:
                out[key] = payload[key]
        stop = payload.get("stop")
        if stop is not None:
            out["stop_sequences"] = [stop] if isinstance(stop, str) else stop
        if payload.get("tools"):
            out["tools"] = tools.tools_to_anthropic(payload["tools"])
            choice = tools.tool_choice_to_anthropic(
                payload.get("tool_choice"), payload.get("parallel_tool_calls")
            )
            if choice is not None:
                out["tool_choice"] = choice
        user = payload.get("user") or payload.get("safety_identifier")
        if isinstance(user, str) and user:
            out["metadata"] = {"user_id": user}
        return out

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        blocks = [as_dict(block) for block in as_list(body.get("content"))]
        texts = [b["text"] for b in blocks if b.get("type") == "text" and isinstance(b.get("text"), str)]
        calls = [
            {
                "id": b.get("id"),
                "type": "function",
                "function": {"name": b.get("name"), "arguments": tools.input_to_arguments(b.get("input"))},
            }
            for b in blocks
            if b.get("type") == "tool_use"
        ]
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(texts) if texts else None,
            "refusal": None,
        }
        if calls:
            message["tool_calls"] = calls
        tokens = usage.from_anthropic(body.get("usage")) or usage.Tokens()
        return {
            "id": ids.chat_id(body.get("id")),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or "",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": reasons.chat_from_anthropic(body.get("stop_reason")),
                }
            ],
            "usage": usage.to_chat(tokens),
        }

    def stream(self, request: dict[str, Any]) -> StreamTranslator:
        return MessagesToChatStream(request)

    def error(self, status: int, body: Any) -> dict[str, Any]:
        return openai_error(status, body)


def _turns(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The system blocks and the user/assistant turns of a chat conversation."""
    if not isinstance(messages, list):
        raise Untranslatable("messages must be a list.", "messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            system += content.to_blocks(message.get("content"), f"{where}.content", images=False)
        elif role == "user":
            _append(turns, "user", content.to_blocks(message.get("content"), f"{where}.content"))
        elif role == "assistant":
            blocks = content.to_blocks(message.get("content"), f"{where}.content", images=False)
            _append(turns, "assistant", blocks + _tool_uses(message.get("tool_calls"), where))
        elif role == "tool":
            _append(turns, "user", [_tool_result(message, where)])
        else:
            raise Untranslatable("Messages must have the role system, user, assistant or tool.", where)
    return system, turns


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return  # Anthropic rejects empty turns; an empty message asks nothing
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _tool_uses(calls: Any, where: str) -> list[dict[str, Any]]:
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise Untranslatable("tool_calls must be a list.", f"{where}.tool_calls")
    blocks = []
    for index, call in enumerate(calls):
        param = f"{where}.tool_calls[{index}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or call.get("type", "function") != "function":
            raise Untranslatable("Only function tool calls can be sent to this model.", param)
        if not isinstance(call.get("id"), str) or not call["id"] or not isinstance(function.get("name"), str):
            raise Untranslatable("A tool call needs an id and a function name.", param)
        blocks.append(
            {
                "type": "tool_use",
                "id": ids.tool_use_id(call["id"]),
                "name": function["name"],
                "input": tools.arguments_to_input(function.get("arguments"), f"{param}.function.arguments"),
            }
        )
    return blocks


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise Untranslatable("A tool message needs its tool_call_id.", f"{where}.tool_call_id")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": ids.tool_use_id(call_id)}
    body = message.get("content")
    if isinstance(body, str):
        result["content"] = body
    elif body is not None:
        result["content"] = content.to_blocks(body, f"{where}.content")
    return result
