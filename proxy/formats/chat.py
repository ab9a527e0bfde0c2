"""OpenAI chat completions (`POST /v1/chat/completions`).

Request texts: each message's `content` (a string, or the `text` of its text parts) whatever the role,
so a system prompt or an earlier assistant turn is checked like the latest user message. Tool-call
arguments and images are not scanned yet.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from proxy.formats import validation
from proxy.formats.base import Slot
from proxy.formats.choices import Choices


class ChatFormat(Choices):
    route = "chat.completions"
    path = "chat/completions"

    def __init__(self) -> None:
        super().__init__(delta_events=True)

    def check(self, payload: dict[str, Any]) -> str:
        return validation.check_chat(payload)

    def prompt(self, payload: dict[str, Any]) -> Any:
        return payload.get("messages")

    def request_texts(self, payload: dict[str, Any]) -> Iterator[Slot]:
        messages = payload.get("messages")
        for message in messages if isinstance(messages, list) else ():
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, str):
                yield Slot(message, "content", content)
            elif isinstance(content, list):
                for part in content:
                    if (
                        isinstance(part, dict)
                        and part.get("type") == "text"
                        and isinstance(part.get("text"), str)
                    ):
                        yield Slot(part, "text", part["text"])


CHAT = ChatFormat()
