"""An Anthropic Messages event stream, re-told as a Chat Completions stream.

| Anthropic event                        | Chat chunk                                                   |
|----------------------------------------|--------------------------------------------------------------|
| `message_start`                        | `delta: {role: "assistant", content: ""}`                    |
| `content_block_start` tool_use         | `delta.tool_calls[{index, id, type, function: {name}}]`      |
| `content_block_delta` text_delta       | `delta.content`                                              |
| `content_block_delta` input_json_delta | `delta.tool_calls[{index, function: {arguments}}]`           |
| `message_delta` (stop_reason, usage)   | `delta: {}` with `finish_reason`                             |
| `message_stop`                         | the usage chunk (if `stream_options.include_usage`), `[DONE]` |
| `error`                                | `data: {"error": {...}}` in OpenAI's shape; the stream ends  |

Thinking, signature and citation deltas, and `ping`, have no chat counterpart and are dropped. Tool
calls are numbered 0, 1, ... in the order their blocks start. An upstream that stops without
`message_stop` still gets its usage chunk and `[DONE]` at EOF (without a finish reason if it never sent
one, which is how a chat client sees a cut-off stream).
"""

from __future__ import annotations

import time
from typing import Any

from proxy.translate import ids, reasons, usage
from proxy.translate.errors import openai_error, status_of
from proxy.translate.fields import as_dict
from proxy.translate.sse import DONE, Event, SseReader, data_event, dumps


class MessagesToChatStream:
    def __init__(self, request: dict[str, Any]) -> None:
        options = request.get("stream_options")
        self._include_usage = isinstance(options, dict) and options.get("include_usage") is True
        self._reader = SseReader()
        self._id = ids.chat_id(None)
        self._model = str(request.get("model") or "")
        self._created = int(time.time())
        self._calls: dict[int, int] = {}  # Anthropic block index -> chat tool call index
        self._usage: dict[str, Any] = {}
        self._finish: str | None = None
        self._done = False

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._event(event) for event in self._reader.feed(chunk))

    def finish(self) -> bytes:
        out = b"".join(self._event(event) for event in self._reader.finish())
        return out if self._done else out + self._close()

    def _event(self, event: Event) -> bytes:
        data = event.json()
        if self._done or data is None:
            return b""
        kind = data.get("type") or event.name
        if kind == "message_start":
            return self._start(data.get("message"))
        if kind == "content_block_start":
            return self._block_start(data.get("index"), data.get("content_block"))
        if kind == "content_block_delta":
            return self._delta(data.get("index"), data.get("delta"))
        if kind == "message_delta":
            return self._message_delta(data)
        if kind == "message_stop":
            return self._close()
        if kind == "error":
            self._done = True
            error = as_dict(data.get("error"))
            status = status_of(error.get("type"))
            return data_event(openai_error(status, {"error": {"message": error.get("message")}}))
        return b""  # ping, content_block_stop, and events added to the API later

    def _start(self, message: Any) -> bytes:
        if isinstance(message, dict):
            self._id = ids.chat_id(message.get("id"))
            self._model = str(message.get("model") or self._model)
            self._merge_usage(message.get("usage"))
        return self._chunk({"role": "assistant", "content": ""})

    def _block_start(self, index: Any, block: Any) -> bytes:
        if not isinstance(block, dict):
            return b""
        if block.get("type") == "text" and block.get("text"):
            return self._chunk({"content": block["text"]})
        if block.get("type") != "tool_use" or not isinstance(index, int):
            return b""
        number = self._calls[index] = len(self._calls)
        call = {
            "index": number,
            "id": block.get("id"),
            "type": "function",
            "function": {"name": block.get("name"), "arguments": ""},
        }
        out = self._chunk({"tool_calls": [call]})
        if isinstance(block.get("input"), dict) and block["input"]:
            out += self._arguments(number, dumps(block["input"]))
        return out

    def _delta(self, index: Any, delta: Any) -> bytes:
        if not isinstance(delta, dict):
            return b""
        if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str) and delta["text"]:
            return self._chunk({"content": delta["text"]})
        if delta.get("type") == "input_json_delta" and index in self._calls:
            fragment = delta.get("partial_json")
            if isinstance(fragment, str) and fragment:
                return self._arguments(self._calls[index], fragment)
        return b""

    def _arguments(self, number: int, fragment: str) -> bytes:
        return self._chunk({"tool_calls": [{"index": number, "function": {"arguments": fragment}}]})

    def _message_delta(self, data: dict[str, Any]) -> bytes:
        self._merge_usage(data.get("usage"))
        delta = data.get("delta")
        reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if reason is None or self._finish is not None:
            return b""
        self._finish = reasons.chat_from_anthropic(reason)
        return self._chunk({}, self._finish)

    def _merge_usage(self, counts: Any) -> None:
        # message_delta's counts are cumulative and may repeat message_start's: the latest wins.
        if isinstance(counts, dict):
            self._usage.update({key: value for key, value in counts.items() if value is not None})

    def _close(self) -> bytes:
        self._done = True
        out = b""
        if self._include_usage:
            tokens = usage.from_anthropic(self._usage) or usage.Tokens()
            out += data_event({**self._base(), "choices": [], "usage": usage.to_chat(tokens)})
        return out + data_event(DONE)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return data_event({**self._base(), "choices": [choice]})

    def _base(self) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
        }
