"""A Chat Completions stream, re-told as an Anthropic Messages event stream.

| Chat chunk                              | Anthropic events                                              |
|-----------------------------------------|---------------------------------------------------------------|
| the first chunk                         | `message_start` (empty content, zero usage), `ping`           |
| `delta.content`                         | `content_block_start` text (if none is open), text_delta      |
| `delta.tool_calls[i]`, a new index      | `content_block_stop`, `content_block_start` tool_use          |
| `delta.tool_calls[i].function.arguments`| `content_block_delta` input_json_delta                        |
| `finish_reason`                         | `content_block_stop` of the open block                        |
| the usage chunk (or `[DONE]`, or EOF)   | `message_delta` (stop_reason, usage), `message_stop`          |
| `{"error": ...}`                        | `error` (api_error, the upstream's message); the stream ends  |

Usage arrives last in a chat stream, so `message_start` carries zeros and `message_delta` carries the
real counts (`input_tokens` included, which the Anthropic SDK reads from there too). Upstreams stream
one tool call at a time (OpenAI, vLLM and llama.cpp do); an argument fragment for a call whose block is
already closed cannot be placed and is dropped, as are name fragments after a call's first. A stream
that ends without a finish reason is closed at EOF with `stop_reason: null`.
"""

from __future__ import annotations

from typing import Any

from proxy.translate import ids, reasons, tools, usage
from proxy.translate.errors import anthropic_error
from proxy.translate.fields import as_dict, as_list
from proxy.translate.sse import DONE, Event, SseReader, named_event


class ChatToMessagesStream:
    def __init__(self, request: dict[str, Any]) -> None:
        self._reader = SseReader()
        self._model = str(request.get("model") or "")
        self._started = False
        self._blocks = 0  # content blocks started so far
        self._open: int | None = None  # the index of the open block
        self._calls: dict[int, int] = {}  # chat tool call index -> Anthropic block index
        self._keys = tools.CallKeys()
        self._finish: str | None = None
        self._refused = False
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
            return self._start(data) + named_event(anthropic_error(500, data))
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

    def _start(self, data: dict[str, Any]) -> bytes:
        if self._started:
            return b""
        self._started = True
        self._model = str(data.get("model") or self._model)
        message: dict[str, Any] = {
            "id": ids.message_id(data.get("id")),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return named_event({"type": "message_start", "message": message}) + named_event({"type": "ping"})

    def _choice(self, choice: dict[str, Any]) -> bytes:
        out = b""
        delta = as_dict(choice.get("delta"))
        text = delta.get("content")
        if isinstance(text, str) and text:
            out += self._text(text)
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            self._refused = True
            out += self._text(refusal)
        for fragment in as_list(delta.get("tool_calls")):
            if isinstance(fragment, dict):
                out += self._tool_call(fragment)
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            self._finish = "refusal" if self._refused else reasons.anthropic_from_chat(reason)
            out += self._stop_block()
        return out

    def _text(self, text: str) -> bytes:
        out = b""
        if self._open is None or self._open in self._calls.values():
            out += self._stop_block() + self._start_block({"type": "text", "text": ""})
        delta = {"type": "text_delta", "text": text}
        return out + named_event({"type": "content_block_delta", "index": self._open, "delta": delta})

    def _tool_call(self, fragment: dict[str, Any]) -> bytes:
        out = b""
        key = self._keys.key(fragment)
        function = as_dict(fragment.get("function"))
        if key not in self._calls:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": fragment.get("id") or "toolu_" + ids.core(None),
                "name": str(function.get("name") or ""),
                "input": {},
            }
            out += self._stop_block() + self._start_block(block)
            self._calls[key] = self._blocks - 1
        arguments = function.get("arguments")
        if self._calls[key] == self._open and isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            out += named_event({"type": "content_block_delta", "index": self._open, "delta": delta})
        return out

    def _start_block(self, block: dict[str, Any]) -> bytes:
        self._open = self._blocks
        self._blocks += 1
        return named_event({"type": "content_block_start", "index": self._open, "content_block": block})

    def _stop_block(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open = self._open, None
        return named_event({"type": "content_block_stop", "index": index})

    def _close(self) -> bytes:
        self._done = True
        out = self._start({}) + self._stop_block()
        counts = usage.to_anthropic(self._tokens or usage.Tokens())
        delta = {"stop_reason": self._finish, "stop_sequence": None}
        out += named_event({"type": "message_delta", "delta": delta, "usage": counts})
        return out + named_event({"type": "message_stop"})
