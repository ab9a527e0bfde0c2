"""Where the text is in an OpenAI-style request, so input rules see every piece of it.

Chat: each message's `content` (a string, or the `text` of its text parts) whatever the role, so
a system prompt or an earlier assistant turn is checked like the latest user message.
Completions: `prompt` (a string or a list of strings). Embeddings: `input` (same; token arrays
carry no text and are left alone). Tool-call arguments and images are not scanned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

FIELDS = {"chat.completions": "messages", "completions": "prompt", "embeddings": "input"}


def texts(route: str, payload: dict[str, Any]) -> Iterator[str]:
    for _, _, text in _slots(route, payload):
        yield text


def rewrite(route: str, payload: dict[str, Any], change: Callable[[str], str]) -> bool:
    """Replace each text by change(text), in place; True when anything changed."""
    changed = False
    for holder, key, text in list(_slots(route, payload)):
        new = change(text)
        if new != text:
            holder[key] = new
            changed = True
    return changed


def _slots(route: str, payload: dict[str, Any]) -> Iterator[tuple[Any, Any, str]]:
    value = payload.get(FIELDS.get(route, ""))
    if route == "chat.completions":
        for message in value if isinstance(value, list) else ():
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, str):
                yield message, "content", content
            elif isinstance(content, list):
                for part in content:
                    if (
                        isinstance(part, dict)
                        and part.get("type") == "text"
                        and isinstance(part.get("text"), str)
                    ):
                        yield part, "text", part["text"]
    elif isinstance(value, str):
        yield payload, FIELDS[route], value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                yield value, index, item
