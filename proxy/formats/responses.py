"""OpenAI Responses API (`POST /v1/responses`).

Request texts: `instructions`; `input` as a string, or its items: messages (a string, or the `text` of
input/output text and refusal parts), the strings inside `function_call` arguments, `function_call_output`
results; and the definitions (function tool descriptions and parameter schemas, `text.format`'s schema).

Answers: the response's `output` items: `output_text` and `refusal` parts of messages, `function_call`
arguments, reasoning summaries. A stream is typed events with no `[DONE]`: text arrives in `.delta`
events and is repeated whole by `.done` events, `response.output_item.done` and the final
`response.completed`; the relay writes what it released into every repeat, so no copy escapes a rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from proxy.errors import bad_request
from proxy.formats import validation
from proxy.formats.base import (
    Slot,
    StreamPiece,
    Usage,
    as_list,
    encoded_json,
    json_leaves,
    text_of,
    text_parts,
    typed_event,
    usage_of,
)

_INPUT_PARTS = frozenset({"input_text", "output_text", "text", "refusal"})
_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


def _ends(event: dict[str, Any]) -> bool:
    kind = event.get("type")
    return isinstance(kind, str) and kind in _ENDS  # an unhashable `type` is no end either


class ResponsesFormat:
    route = "responses"
    path = "responses"
    streams = True
    done_marker = False
    error_shape = "openai"

    def check(self, payload: dict[str, Any]) -> str:
        model = validation.check_common(payload)
        value = payload.get("input")
        if value is None:
            raise bad_request("Missing required parameter: 'input'.", param="input")
        if not isinstance(value, str | list):
            raise bad_request("'input' must be a string or an array of items.", param="input")
        for index, item in enumerate(value if isinstance(value, list) else ()):
            if not isinstance(item, dict):
                raise bad_request(f"'input[{index}]' must be an object.", param=f"input[{index}]")
        for key in ("instructions", "previous_response_id"):
            if payload.get(key) is not None and not isinstance(payload.get(key), str):
                raise bad_request(f"'{key}' must be a string.", param=key)
        store = payload.get("store")
        if store is not None and not isinstance(store, bool):
            raise bad_request("'store' must be a boolean.", param="store")
        tools = payload.get("tools")
        if tools is not None and not isinstance(tools, list):
            raise bad_request("'tools' must be an array.", param="tools")
        return model

    def prompt(self, payload: dict[str, Any]) -> Any:
        return {"instructions": payload.get("instructions"), "input": payload.get("input")}

    def request_texts(self, payload: dict[str, Any]) -> Iterator[Slot]:
        yield from text_of(payload, "instructions")
        value = payload.get("input")
        if isinstance(value, str):
            if value:
                yield Slot(payload, "input", value)
            value = ()
        for item in value or ():
            if not isinstance(item, dict):
                continue
            kind = item.get("type", "message")
            if kind == "message":
                yield from text_parts(item, "content", _INPUT_PARTS)
            elif kind == "function_call":
                yield from encoded_json(item, "arguments")
            elif kind in ("function_call_output", "custom_tool_call_output"):
                yield from text_parts(item, "output", _INPUT_PARTS)
            elif kind == "custom_tool_call":
                yield from text_of(item, "input")
            elif kind == "reasoning":
                for part in as_list(item.get("summary")):
                    if isinstance(part, dict):
                        yield from text_of(part, "text")
        yield from _definitions(payload)

    # -- JSON answers ------------------------------------------------------------------------------

    def answer_texts(self, body: dict[str, Any]) -> Iterator[tuple[dict[str, Any], Slot | None]]:
        found = False
        for _, slot in _output_slots(body.get("output")):
            found = True
            yield body, slot
        if not found:
            yield body, None

    def block_choice(self, choice: dict[str, Any]) -> None:
        choice["output"] = []
        choice["status"] = "incomplete"
        choice["incomplete_details"] = {"reason": "content_filter"}
        choice.pop("output_text", None)

    def scrub(self, choice: dict[str, Any]) -> None:
        for item in as_list(choice.get("output")):
            for part in as_list(item.get("content")) if isinstance(item, dict) else ():
                if isinstance(part, dict) and part.get("logprobs"):
                    part["logprobs"] = []

    def summary(self, body: dict[str, Any]) -> tuple[Usage | None, str, int]:
        return usage_of(body), _finish(body), 1

    # -- streams -----------------------------------------------------------------------------------

    def stream_pieces(self, event: dict[str, Any]) -> Iterator[StreamPiece | None]:
        kind = event.get("type")
        oi = event.get("output_index", 0)
        ci = event.get("content_index", 0)
        if kind == "response.output_text.delta":
            yield _piece((oi, ci), event, "delta", logprobs=True)
        elif kind == "response.refusal.delta":
            yield _piece((oi, ci), event, "delta", field="refusal")
        elif kind == "response.function_call_arguments.delta":
            yield _piece((oi, "args"), event, "delta", field="arguments", json_text=True)
        elif kind == "response.output_text.done":
            yield _piece((oi, ci), event, "text", whole=True, logprobs=True)
        elif kind == "response.refusal.done":
            yield _piece((oi, ci), event, "refusal", whole=True, field="refusal")
        elif kind == "response.function_call_arguments.done":
            yield _piece((oi, "args"), event, "arguments", whole=True, field="arguments", json_text=True)
        elif kind == "response.reasoning_summary_text.delta":
            channel = (oi, "summary", event.get("summary_index", 0))
            yield _piece(channel, event, "delta", field="reasoning")
        elif kind == "response.reasoning_summary_text.done":
            channel = (oi, "summary", event.get("summary_index", 0))
            yield _piece(channel, event, "text", whole=True, field="reasoning")
        elif kind in ("response.content_part.added", "response.content_part.done"):
            part = event.get("part")
            if isinstance(part, dict):
                yield from _part_pieces((oi, ci), part, whole=kind.endswith(".done"))
        elif kind in ("response.output_item.added", "response.output_item.done"):
            item = event.get("item")
            if isinstance(item, dict):
                yield from _item_pieces(oi, item, whole=kind.endswith(".done"))
        elif _ends(event):
            response = event.get("response")
            if isinstance(response, dict):
                for position, item in enumerate(as_list(response.get("output"))):
                    if isinstance(item, dict):
                        yield from _item_pieces(position, item, whole=True)
                yield StreamPiece(
                    None, 0, response, "", None, _finish(response) or "stop", carries_text=False
                )

    def stream_usage(self, event: dict[str, Any], seen: Usage | None) -> Usage | None:
        response = event.get("response")
        if _ends(event) and isinstance(response, dict):
            return usage_of(response) or seen
        return seen

    def stream_end(self, event: dict[str, Any]) -> bool:
        return _ends(event)

    def stream_template(self, event: dict[str, Any]) -> dict[str, Any] | None:
        response = event.get("response")
        if event.get("type") == "response.created" and isinstance(response, dict):
            return {k: v for k, v in response.items() if k not in ("output", "usage")}
        return None

    def stream_chunk(
        self, template: dict[str, Any], index: int, text: str | None, finish_reason: str | None
    ) -> dict[str, Any]:
        raise TypeError("Responses API events are built from the upstream's own (release_event)")

    def release_event(
        self, template: dict[str, Any], event: dict[str, Any], piece: StreamPiece, text: str
    ) -> dict[str, Any]:
        released = {**event, "delta": text}
        if "logprobs" in released:
            released["logprobs"] = []
        return released

    def block_events(self, template: dict[str, Any], choices: list[int]) -> list[dict[str, Any]]:
        response = {
            **template,
            "status": "incomplete",
            "incomplete_details": {"reason": "content_filter"},
            "output": [],
        }
        return [{"type": "response.incomplete", "response": response}]

    def encode(self, event: dict[str, Any]) -> bytes:
        return typed_event(event)

    def first_text(self, answer: Any) -> str:
        if isinstance(answer, dict):
            for _, slot in _output_slots(answer.get("output")):
                if slot.field == "content":
                    return slot.text
            return ""
        if isinstance(answer, list) and answer and isinstance(answer[0], dict):
            text = answer[0].get("content")
            return text if isinstance(text, str) else ""
        return ""


def _definitions(payload: dict[str, Any]) -> Iterator[Slot]:
    tools = payload.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, dict):
            yield from _definition(tool, "parameters")
    text = payload.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if isinstance(fmt, dict):
        yield from _definition(fmt, "schema")


def _definition(holder: dict[str, Any], schema_key: str) -> Iterator[Slot]:
    for slot in text_of(holder, "description"):
        slot.field = "definition"
        yield slot
    schema = holder.get(schema_key)
    if isinstance(schema, dict | list):
        for slot in json_leaves(schema, schema=True):
            slot.field = "definition"
            yield slot


def _output_slots(output: Any) -> Iterator[tuple[int, Slot]]:
    for position, item in enumerate(output if isinstance(output, list) else ()):
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            for part in as_list(item.get("content")):
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    yield position, Slot(part, "text", part["text"])
                elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
                    yield position, Slot(part, "refusal", part["refusal"], "refusal")
        elif kind == "function_call" and isinstance(item.get("arguments"), str):
            yield position, Slot(item, "arguments", item["arguments"], "arguments", json_text=True)
        elif kind == "reasoning":
            for part in as_list(item.get("summary")):
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    yield position, Slot(part, "text", part["text"], "reasoning")


def _piece(
    channel: Any,
    holder: dict[str, Any],
    key: str,
    *,
    whole: bool = False,
    field: str = "content",
    json_text: bool = False,
    logprobs: bool = False,
) -> StreamPiece | None:
    text = holder.get(key)
    if not isinstance(text, str):
        return None
    return StreamPiece(
        channel,
        0,
        holder,
        key,
        text,
        ends=whole,
        whole=whole,
        field=field,
        json_text=json_text,
        logprobs_holder=holder if logprobs else None,
    )


def _part_pieces(channel: Any, part: dict[str, Any], *, whole: bool) -> Iterator[StreamPiece | None]:
    kind = part.get("type")
    key = "text" if kind == "output_text" else "refusal" if kind == "refusal" else None
    if key is None or not isinstance(part.get(key), str):
        return
    if not whole and not part[key]:
        return  # an `.added` part is empty in practice; a non-empty one is read like a delta
    field = "content" if key == "text" else "refusal"
    yield _piece(channel, part, key, whole=whole, field=field, logprobs=key == "text")


def _item_pieces(position: int, item: dict[str, Any], *, whole: bool) -> Iterator[StreamPiece | None]:
    kind = item.get("type")
    if kind == "message":
        for ci, part in enumerate(as_list(item.get("content"))):
            if isinstance(part, dict):
                yield from _part_pieces((position, ci), part, whole=whole)
    elif kind == "reasoning" and whole:
        for si, part in enumerate(as_list(item.get("summary"))):
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield _piece((position, "summary", si), part, "text", whole=True, field="reasoning")
    elif kind == "function_call" and isinstance(item.get("arguments"), str) and (whole or item["arguments"]):
        yield _piece((position, "args"), item, "arguments", whole=whole, field="arguments", json_text=True)


def _finish(response: dict[str, Any]) -> str:
    status = response.get("status")
    if status == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return _INCOMPLETE.get(str(reason), "length")
    if status == "failed":
        return "error"
    if status != "completed":
        return ""
    output = response.get("output")
    calls = any(isinstance(i, dict) and i.get("type") == "function_call" for i in as_list(output))
    return "tool_calls" if calls else "stop"


RESPONSES = ResponsesFormat()
