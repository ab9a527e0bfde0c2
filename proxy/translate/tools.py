"""Tool definitions, tool choice and tool-call arguments between Chat Completions and Anthropic.

| Chat                                                      | Anthropic                                     |
|-----------------------------------------------------------|-----------------------------------------------|
| `{type: function, function: {name, description, parameters}}` | `{name, description, input_schema}`       |
| `tool_choice`: `"auto"`, `"required"`, `"none"`           | `{type: auto}`, `{type: any}`, `{type: none}` |
| `tool_choice: {type: function, function: {name}}`         | `{type: tool, name}`                          |
| `parallel_tool_calls: false`                              | `tool_choice.disable_parallel_tool_use: true` |
| `function.arguments` (a JSON string)                      | `input` (a JSON object)                       |

`strict` and `cache_control` are dropped (neither side can check the other's). Anthropic's server tools
(web search, code execution, computer use...) and chat's `custom` tools have no counterpart:
Untranslatable. Arguments that are not a JSON object cannot become an Anthropic `input`: in a request
that is Untranslatable; in an answer from a chat model (which may write anything) they become `{}`, the
input of a call without arguments, since an answer cannot be refused.
"""

from __future__ import annotations

import json
from typing import Any

from proxy.jsonbody import NotJson, parse_json
from proxy.translate.base import Untranslatable
from proxy.translate.fields import as_dict

_EMPTY_SCHEMA = {"type": "object", "properties": {}}
_CHOICES_TO_ANTHROPIC = {"auto": "auto", "required": "any", "none": "none"}
_CHOICES_TO_CHAT = {value: key for key, value in _CHOICES_TO_ANTHROPIC.items()}


def tools_to_anthropic(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise Untranslatable("tools must be a list.", "tools")
    out = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type", "function") != "function":
            raise Untranslatable("Only function tools can be sent to this model.", f"tools[{index}]")
        if not isinstance(function.get("name"), str):
            raise Untranslatable("A function tool needs a name.", f"tools[{index}].function.name")
        out.append(_definition(function["name"], function.get("description"), function.get("parameters")))
    return out


def _definition(name: str, description: Any, schema: Any) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": name}
    if isinstance(description, str):
        tool["description"] = description
    tool["input_schema"] = schema if isinstance(schema, dict) else dict(_EMPTY_SCHEMA)
    return tool


def tool_choice_to_anthropic(choice: Any, parallel: Any) -> dict[str, Any] | None:
    """Anthropic's tool_choice for chat's `tool_choice` and `parallel_tool_calls`; None for the default."""
    result: dict[str, Any]
    if choice is None:
        return {"type": "auto", "disable_parallel_tool_use": True} if parallel is False else None
    if isinstance(choice, str) and choice in _CHOICES_TO_ANTHROPIC:
        result = {"type": _CHOICES_TO_ANTHROPIC[choice]}
    elif isinstance(name := as_dict(as_dict(choice).get("function")).get("name"), str):
        result = {"type": "tool", "name": name}
    else:
        raise Untranslatable("This tool_choice has no equivalent for this model.", "tool_choice")
    if parallel is False and result["type"] != "none":
        result["disable_parallel_tool_use"] = True
    return result


def tools_to_chat(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise Untranslatable("tools must be a list.", "tools")
    out = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type", "custom") != "custom":
            raise Untranslatable(
                "Only client tools (name and input_schema) can be sent to this model; "
                "server tools run at Anthropic only.",
                f"tools[{index}]",
            )
        if not isinstance(tool.get("name"), str):
            raise Untranslatable("A tool needs a name.", f"tools[{index}].name")
        function: dict[str, Any] = {"name": tool["name"]}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        function["parameters"] = tool.get("input_schema") or dict(_EMPTY_SCHEMA)
        out.append({"type": "function", "function": function})
    return out


def tool_choice_to_chat(choice: Any) -> tuple[Any, bool | None]:
    """Chat's `tool_choice` and `parallel_tool_calls` (None: leave unset) for Anthropic's tool_choice."""
    kind = choice.get("type") if isinstance(choice, dict) else None
    if isinstance(kind, str) and kind in _CHOICES_TO_CHAT:
        mapped: Any = _CHOICES_TO_CHAT[kind]
    elif kind == "tool" and isinstance(choice.get("name"), str):
        mapped = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise Untranslatable("This tool_choice has no equivalent for this model.", "tool_choice")
    parallel = False if choice.get("disable_parallel_tool_use") is True else None
    return mapped, parallel


def arguments_to_input(arguments: Any, param: str) -> dict[str, Any]:
    """An Anthropic `input` for a request's tool-call arguments; Untranslatable if not a JSON object."""
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    value = _object(arguments)
    if value is None:
        raise Untranslatable("Tool call arguments must be a JSON object for this model.", param)
    return value


def answer_input(arguments: Any) -> dict[str, Any]:
    """An Anthropic `input` for a chat answer's tool-call arguments: `{}` when they are not an object."""
    return _object(arguments) or {}


def input_to_arguments(value: Any) -> str:
    return json.dumps(value if isinstance(value, dict) else {}, separators=(",", ":"), ensure_ascii=False)


def _object(arguments: Any) -> dict[str, Any] | None:
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str):
        return None
    try:
        value = parse_json(arguments.encode())
    except NotJson:
        return None
    return value if isinstance(value, dict) else None


class CallKeys:
    """Which tool call a chat stream's fragment continues: its `index`, or, for servers that leave the
    index out, the call with its `id` (a new id: a new call; no id: the latest call)."""

    def __init__(self) -> None:
        self._by_id: dict[str, int] = {}
        self._latest: int | None = None
        self._count = 0

    def key(self, fragment: dict[str, Any]) -> int:
        call_id = fragment.get("id") if isinstance(fragment.get("id"), str) and fragment["id"] else None
        index = fragment.get("index")
        if isinstance(index, int) and not isinstance(index, bool):
            key = index
        elif call_id is not None and call_id in self._by_id:
            key = self._by_id[call_id]
        elif call_id is not None or self._latest is None:
            key = self._count
        else:
            key = self._latest
        if call_id is not None:
            self._by_id.setdefault(call_id, key)
        self._latest, self._count = key, max(self._count, key + 1)
        return key
