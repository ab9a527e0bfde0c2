"""A Chat Completions stream, re-told as a Responses API event stream.

| Chat chunk                              | Responses events                                              |
|-----------------------------------------|---------------------------------------------------------------|
| the first chunk                         | `response.created`, `response.in_progress`                    |
| `delta.content`                         | a message item and text part (if none is open), text delta    |
| `delta.refusal`                         | a `refusal` part in the message item, `refusal.delta`         |
| `delta.tool_calls[i]`, a new index      | the open item's closing events, `output_item.added` call      |
| `delta.tool_calls[i].function.arguments`| `function_call_arguments.delta`                               |
| `finish_reason`                         | the open item's closing events                                |
| the usage chunk (or `[DONE]`, or EOF)   | `response.completed` / `response.incomplete`, usage           |
| `{"error": ...}`                        | `error`; the stream ends                                      |

An item closes with `output_text.done` (or `function_call_arguments.done`), `content_part.done` and
`output_item.done`; `response.completed` holds every output item whole and the usage.

Every event carries its `sequence_number` (0, 1, ...); there is no `[DONE]`. One item is open at a
time, so an argument fragment for a call whose item is already closed is dropped (upstreams stream
one call at a time). A stream that ends without a finish reason closes at EOF as `response.incomplete`
with `incomplete_details: null`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from proxy.translate import ids, reasons, tools, usage
from proxy.translate import response_objects as objects
from proxy.translate.errors import upstream_message
from proxy.translate.fields import as_dict, as_list
from proxy.translate.sse import DONE, Event, SseReader, named_event


@dataclass(slots=True)
class _Item:
    """An output item being streamed: a message (its parts) or a function call (its arguments)."""

    id: str
    index: int
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    parts: list[dict[str, Any]] = field(default_factory=list)

    def final(self, status: str) -> dict[str, Any]:
        if self.call_id:
            return objects.function_call_item(self.id, self.call_id, self.name, self.arguments, status)
        return objects.message_item(self.id, [dict(part) for part in self.parts], status)


class ChatToResponsesStream:
    def __init__(self, request: dict[str, Any]) -> None:
        self._request = request
        self._reader = SseReader()
        self._core = ids.core(None)
        self._model = str(request.get("model") or "")
        self._created: float = int(time.time())
        self._sequence = 0
        self._started = False
        self._output: list[dict[str, Any]] = []  # the closed items, final
        self._open: _Item | None = None
        self._calls: dict[int, _Item] = {}  # chat tool call index -> its item
        self._keys = tools.CallKeys()
        self._finish: str | None = None
        self._tokens: usage.Tokens | None = None
        self._done = False

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._event(event) for event in self._reader.feed(chunk))

    def finish(self) -> bytes:
        out = b"".join(self._event(event) for event in self._reader.finish())
        return out if self._done else out + self._close()

    def _event(self, event: Event) -> bytes:
        if self._done:
            return b""
        if event.data.strip() == DONE:
            return self._close()
        data = event.json()
        if data is None:
            return b""
        if "error" in data and not data.get("choices"):
            self._done = True
            error = as_dict(data["error"])
            code = error.get("code") if isinstance(error.get("code"), str) else None
            message = upstream_message(500, data)
            return self._start(data) + self._emit(
                {"type": "error", "code": code, "message": message, "param": None}
            )
        out = self._start(data)
        choices = data.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                out += self._choice(choice)
        if data.get("usage"):
            self._tokens = usage.from_chat(data["usage"])
            if self._finish is not None:
                out += self._close()
        return out

    def _emit(self, event: dict[str, Any]) -> bytes:
        event["sequence_number"] = self._sequence
        self._sequence += 1
        return named_event(event)

    def _start(self, data: dict[str, Any]) -> bytes:
        if self._started:
            return b""
        self._started = True
        self._core = ids.core(data.get("id"))
        self._model = str(data.get("model") or self._model)
        if isinstance(data.get("created"), int):
            self._created = data["created"]
        shell = self._response("in_progress", None)
        return self._emit({"type": "response.created", "response": shell}) + self._emit(
            {"type": "response.in_progress", "response": shell}
        )

    def _choice(self, choice: dict[str, Any]) -> bytes:
        out = b""
        delta = as_dict(choice.get("delta"))
        for kind, key in (("output_text", "content"), ("refusal", "refusal")):
            text = delta.get(key)
            if isinstance(text, str) and text:
                out += self._text(kind, text)
        for fragment in as_list(delta.get("tool_calls")):
            if isinstance(fragment, dict):
                out += self._tool_call(fragment)
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            self._finish = reason
            out += self._close_item(self._item_status())
        return out

    def _text(self, kind: str, text: str) -> bytes:
        out = b""
        item = self._open
        if item is None or item.call_id:
            out += self._close_item()
            item = _Item(objects.item_id("msg", self._core, len(self._output)), len(self._output))
            out += self._open_item(item)
        if not item.parts or item.parts[-1]["type"] != kind:
            out += self._close_part(item)
            part = objects.text_part("") if kind == "output_text" else objects.refusal_part("")
            item.parts.append(part)
            out += self._emit(
                {"type": "response.content_part.added", **self._where(item), "part": dict(part)}
            )
        field_ = "text" if kind == "output_text" else "refusal"
        item.parts[-1][field_] += text
        event = {"type": f"response.{kind}.delta", **self._where(item), "delta": text}
        if kind == "output_text":
            event["logprobs"] = []
        return out + self._emit(event)

    def _tool_call(self, fragment: dict[str, Any]) -> bytes:
        out = b""
        key = self._keys.key(fragment)
        function = as_dict(fragment.get("function"))
        if key not in self._calls:
            out += self._close_item()
            index = len(self._output)
            item = _Item(
                objects.item_id("fc", self._core, index),
                index,
                call_id=str(fragment.get("id") or "call_" + ids.core(None)),
                name=str(function.get("name") or ""),
            )
            self._calls[key] = item
            out += self._open_item(item)
        item = self._calls[key]
        arguments = function.get("arguments")
        if item is self._open and isinstance(arguments, str) and arguments:
            item.arguments += arguments
            where = {"item_id": item.id, "output_index": item.index}
            out += self._emit({"type": "response.function_call_arguments.delta", **where, "delta": arguments})
        return out

    def _open_item(self, item: _Item) -> bytes:
        self._open = item
        return self._emit(
            {
                "type": "response.output_item.added",
                "output_index": item.index,
                "item": item.final("in_progress"),
            }
        )

    def _where(self, item: _Item) -> dict[str, Any]:
        return {"item_id": item.id, "output_index": item.index, "content_index": len(item.parts) - 1}

    def _close_part(self, item: _Item) -> bytes:
        if not item.parts:
            return b""
        part = item.parts[-1]
        if part["type"] == "output_text":
            done = {
                "type": "response.output_text.done",
                **self._where(item),
                "text": part["text"],
                "logprobs": [],
            }
        else:
            done = {"type": "response.refusal.done", **self._where(item), "refusal": part["refusal"]}
        return self._emit(done) + self._emit(
            {"type": "response.content_part.done", **self._where(item), "part": dict(part)}
        )

    def _close_item(self, status: str = "completed") -> bytes:
        """The open item's closing events: `completed` when another item follows it, else the status
        the response ends with."""
        item, self._open = self._open, None
        if item is None:
            return b""
        final = item.final(status)
        if item.call_id:
            done = {
                "item_id": item.id,
                "output_index": item.index,
                "name": item.name,
                "arguments": item.arguments,
            }
            out = self._emit({"type": "response.function_call_arguments.done", **done})
        else:
            out = self._close_part(item)
        self._output.append(final)
        return out + self._emit(
            {"type": "response.output_item.done", "output_index": item.index, "item": final}
        )

    def _item_status(self) -> str:
        return "completed" if self._status()[0] == "completed" else "incomplete"

    def _status(self) -> tuple[str, dict[str, str] | None]:
        if self._finish is None:
            return "incomplete", None  # cut off: the upstream never said it was done
        return reasons.responses_from_chat(self._finish)

    def _close(self) -> bytes:
        self._done = True
        out = self._start({}) + self._close_item(self._item_status())
        status, incomplete = self._status()
        tokens = usage.to_responses(self._tokens or usage.Tokens())
        final = self._response(status, tokens, incomplete)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._emit({"type": kind, "response": final})

    def _response(
        self, status: str, tokens: dict[str, Any] | None, incomplete: dict[str, str] | None = None
    ) -> dict[str, Any]:
        return objects.response(
            self._request,
            id_="resp_" + self._core,
            created_at=self._created,
            model=self._model,
            status=status,
            output=list(self._output),
            usage=tokens,
            incomplete_details=incomplete,
        )
