"""A Responses API client served by a Chat Completions upstream.

Request (responses -> chat):

| Responses                                      | Chat Completions                                    |
|------------------------------------------------|-----------------------------------------------------|
| `model`                                        | `model`, unchanged                                  |
| `instructions`                                 | a leading `system` message                          |
| `input` as a string                            | one `user` message                                  |
| message items (`role` user, assistant, system) | messages of that role; `developer` -> `system`      |
| `input_text` / `output_text` parts             | text (one part -> a string, several -> text parts)  |
| `input_image` with `image_url`                 | an `image_url` part (`detail` kept)                 |
| `function_call` items                          | `tool_calls` of the assistant message before them |
| `function_call_output` items                   | `tool` messages                                     |
| function `tools` (`strict` kept)               | `tools` of type function                            |
| `tool_choice` auto/none/required, `{type: function, name}` | the same, in chat's shape              |
| `max_output_tokens`                            | `max_completion_tokens`                             |
| `text.format` json_schema / json_object        | `response_format` json_schema / json_object         |
| `text.verbosity`, `reasoning.effort`           | `verbosity`, `reasoning_effort`                     |
| `temperature`, `top_p`, `parallel_tool_calls`   | the same                                            |
| `user`, `safety_identifier`, `prompt_cache_key` | the same                                            |
| `service_tier`                                 | the same                                            |
| `stream`                                       | `stream`, with `stream_options.include_usage: true` |

Dropped: `store` (the translation is stateless: nothing is kept, and the answer says `store: false`),
`metadata` (kept only by stored responses), `include` (extra output the chat upstream cannot produce),
`stream_options`, `truncation: "disabled"`, `background: false`, `reasoning.summary`, cache-retention
hints, and reasoning items in `input` (a model's own earlier reasoning, which chat cannot take back).
Refused (Untranslatable): `previous_response_id`, `conversation` and `item_reference` items (they need
an upstream that keeps responses), `background: true`, stored `prompt`s, built-in tools (web search,
file search, computer use, MCP...) and their call items, file inputs and images by file id,
`truncation: "auto"`, `top_logprobs`, `max_tool_calls`, and any other field this module does not know.

Answer (chat -> responses): the first choice's `content` and `refusal` become one message item with
`output_text` / `refusal` parts, each tool call a `function_call` item (`call_id` = the chat call id);
status per `reasons`; usage per `usage`; id `chatcmpl-x` -> `resp_x`. Reasoning text that some
chat servers add (`reasoning_content`) is dropped: a reasoning item would need the upstream's ids.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from proxy.translate import content, ids, reasons, usage
from proxy.translate import response_objects as objects
from proxy.translate.base import CHAT, RESPONSES, StreamTranslator, Translation, Untranslatable
from proxy.translate.errors import openai_error
from proxy.translate.fields import FieldRules, as_dict, as_list, first_choice
from proxy.translate.responses_chat_stream import ChatToResponsesStream

_PASSED = ("temperature", "top_p", "user", "safety_identifier", "prompt_cache_key")
_STATEFUL = "needs an upstream that keeps responses; this model is served through chat completions."
_RULES = FieldRules(
    target="the Chat Completions API",
    mapped=frozenset(
        {*_PASSED, "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls"}
        | {"max_output_tokens", "text", "reasoning", "stream", "service_tier"}
    ),
    dropped=frozenset(
        {"store", "metadata", "include", "stream_options", "prompt_cache_retention", "prompt_cache_options"}
    ),
    harmless={"truncation": ("disabled",), "background": (False,), "top_logprobs": (0,)},
    why={
        "previous_response_id": "previous_response_id " + _STATEFUL,
        "conversation": "A conversation " + _STATEFUL,
        "background": "Background mode " + _STATEFUL,
        "prompt": "Stored prompts are kept by OpenAI only; send the prompt's text as instructions.",
        "truncation": "Automatic truncation is not available for this model.",
        "top_logprobs": "Log probabilities are not translated for this model.",
    },
)
# The Responses field each chat field comes from, to name the client's field when a further step
# (chat -> messages) refuses the chat request. Chat message indices differ from input item indices
# (instructions, merged function calls), so a message names the whole input.
_CLIENT_FIELDS = {
    "messages": "input",
    "max_completion_tokens": "max_output_tokens",
    "response_format": "text.format",
    "verbosity": "text.verbosity",
    "reasoning_effort": "reasoning.effort",
}
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_TEXT_PARTS = ("input_text", "output_text")


@dataclass(frozen=True)
class ResponsesToChat(Translation):
    client: str = RESPONSES
    upstream: str = CHAT
    upstream_path: str = "chat/completions"

    def request(self, payload: dict[str, Any]) -> dict[str, Any]:
        _RULES.check(payload)
        out: dict[str, Any] = {"model": payload.get("model"), "messages": _messages(payload)}
        if payload.get("max_output_tokens") is not None:
            out["max_completion_tokens"] = payload["max_output_tokens"]
        out |= {key: payload[key] for key in _PASSED if payload.get(key) is not None}
        if payload.get("service_tier") is not None:
            out["service_tier"] = payload["service_tier"]
        if payload.get("tools"):
            out["tools"] = _tools(payload["tools"])
            # Chat servers reject tool_choice and parallel_tool_calls without tools.
            if payload.get("parallel_tool_calls") is not None:
                out["parallel_tool_calls"] = payload["parallel_tool_calls"]
            if payload.get("tool_choice") is not None:
                out["tool_choice"] = _tool_choice(payload["tool_choice"])
        out |= _text_options(payload.get("text")) | _reasoning(payload.get("reasoning"))
        if payload.get("stream"):
            out["stream"] = True
            out["stream_options"] = {"include_usage": True}
        return out

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        core = ids.core(body.get("id"))
        choice = first_choice(body)
        message = as_dict(choice.get("message"))
        status, incomplete = reasons.responses_from_chat(choice.get("finish_reason"))
        output: list[dict[str, Any]] = []
        parts: list[dict[str, Any]] = []
        text = content.joined_text(message.get("content"))
        if text:
            parts.append(objects.text_part(text))
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal:
            parts.append(objects.refusal_part(refusal))
        if parts:
            output.append(objects.message_item(objects.item_id("msg", core, 0), parts, "completed"))
        for call in as_list(message.get("tool_calls")):
            function = as_dict(as_dict(call).get("function"))
            arguments = function.get("arguments")
            output.append(
                objects.function_call_item(
                    objects.item_id("fc", core, len(output)),
                    str(call.get("id") or "call_" + ids.core(None)),
                    str(function.get("name") or ""),
                    arguments if isinstance(arguments, str) else "",
                    "completed",
                )
            )
        if output and status != "completed":  # the item the model was writing when it was stopped
            output[-1]["status"] = "incomplete"
        tokens = usage.from_chat(body.get("usage")) or usage.Tokens()
        created = body.get("created")
        return objects.response(
            None,
            id_="resp_" + core,
            created_at=created if isinstance(created, int | float) else int(time.time()),
            model=str(body.get("model") or ""),
            status=status,
            output=output,
            usage=usage.to_responses(tokens),
            incomplete_details=incomplete,
        )

    def stream(self, request: dict[str, Any]) -> StreamTranslator:
        return ChatToResponsesStream(request)

    def error(self, status: int, body: Any) -> dict[str, Any]:
        return openai_error(status, body)


def client_param(chat_param: str | None) -> str | None:
    """The request field a chat field was translated from: `response_format` -> `text.format`."""
    if chat_param is None:
        return None
    head = re.match(r"[a-z_]*", chat_param)
    name = head.group(0) if head else chat_param
    if name == "tools":  # tools keep their order, so their index still holds
        tool = re.match(r"tools(\[\d+\])?", chat_param)
        return tool.group(0) if tool else name
    return _CLIENT_FIELDS.get(name, name)


def _messages(payload: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    instructions = payload.get("instructions")
    if isinstance(instructions, str):
        if instructions:
            messages.append({"role": "system", "content": instructions})
    elif instructions is not None:
        raise Untranslatable("instructions must be a string for this model.", "instructions")
    items = payload.get("input")
    if isinstance(items, str):
        return [*messages, {"role": "user", "content": items}]
    if not isinstance(items, list):
        raise Untranslatable("input must be a string or a list of items.", "input")
    for index, item in enumerate(items):
        _add_item(messages, item, f"input[{index}]")
    return messages


def _add_item(messages: list[dict[str, Any]], item: Any, where: str) -> None:
    kind = item.get("type", "message") if isinstance(item, dict) else None
    if kind == "message" and isinstance(item.get("role"), str) and item["role"] in _ROLES:
        role = _ROLES[item["role"]]
        messages.append(
            {
                "role": role,
                "content": _content(item.get("content"), f"{where}.content", images=role == "user"),
            }
        )
    elif kind == "function_call":
        if not all(isinstance(item.get(key), str) for key in ("call_id", "name", "arguments")):
            raise Untranslatable("A function_call item needs call_id, name and arguments.", where)
        call = {
            "id": item["call_id"],
            "type": "function",
            "function": {"name": item["name"], "arguments": item["arguments"]},
        }
        if messages and messages[-1]["role"] == "assistant":
            messages[-1].setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        if not isinstance(item.get("call_id"), str):
            raise Untranslatable("A function_call_output item needs its call_id.", f"{where}.call_id")
        output = item.get("output")
        text = output if isinstance(output, str) else _content(output, f"{where}.output", images=False)
        messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": text})
    elif kind == "reasoning":
        return
    elif kind == "item_reference":
        raise Untranslatable("An item_reference " + _STATEFUL, where)
    else:
        raise Untranslatable("Only message, function_call and function_call_output items can be sent.", where)


def _content(parts: Any, where: str, *, images: bool) -> str | list[dict[str, Any]]:
    if isinstance(parts, str):
        return parts
    if not isinstance(parts, list):
        raise Untranslatable("Content must be a string or a list of parts.", where)
    out: list[dict[str, Any]] = []
    for index, part in enumerate(parts):
        param = f"{where}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _TEXT_PARTS and isinstance(part.get("text"), str):
            out.append({"type": "text", "text": part["text"]})
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            out.append({"type": "text", "text": part["refusal"]})
        elif kind == "input_image" and images and isinstance(part.get("image_url"), str):
            image = {"url": part["image_url"]}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            out.append({"type": "image_url", "image_url": image})
        else:
            raise Untranslatable(
                "Only text" + (" and images given by URL" if images else "") + " can be sent in this part.",
                param,
            )
    return content.simplest(out)


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise Untranslatable("tools must be a list.", "tools")
    out = []
    for index, tool in enumerate(tools):
        if (
            not isinstance(tool, dict)
            or tool.get("type") != "function"
            or not isinstance(tool.get("name"), str)
        ):
            raise Untranslatable(
                "Only function tools can be used with this model; built-in tools run at OpenAI only.",
                f"tools[{index}]",
            )
        function = {key: tool[key] for key in ("name", "description", "parameters", "strict") if key in tool}
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise Untranslatable("This tool_choice has no equivalent in the Chat Completions API.", "tool_choice")


def _text_options(text: Any) -> dict[str, Any]:
    if not isinstance(text, dict):
        return {}
    out: dict[str, Any] = {}
    if text.get("verbosity") is not None:
        out["verbosity"] = text["verbosity"]
    fmt = as_dict(text.get("format"))
    kind = fmt.get("type")
    if kind == "json_schema":
        schema = {key: fmt[key] for key in ("name", "schema", "strict", "description") if key in fmt}
        out["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif kind == "json_object":
        out["response_format"] = {"type": "json_object"}
    elif text.get("format") is not None and kind != "text":
        raise Untranslatable("This text.format has no equivalent in the Chat Completions API.", "text.format")
    return out


def _reasoning(reasoning: Any) -> dict[str, Any]:
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    return {"reasoning_effort": effort} if effort is not None else {}
