"""What a translation between two wire APIs provides, and the one error it raises.

A `Translation` turns a client's request into the upstream's, and the upstream's answer, stream and
errors back into the client's. It is pure: dicts and bytes in, dicts and bytes out, no Flask, no I/O.
The gateway decides which translation applies (by the client's route and the upstream's API); this
package only knows the formats.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol

# API names: the client's route names, and what an upstream speaks.
CHAT = "chat.completions"
RESPONSES = "responses"
MESSAGES = "messages"


class Untranslatable(Exception):
    """A request field the target API cannot express (e.g. n > 1 to Anthropic): becomes a clear 400.

    The message names the feature, never a value from the request: error texts are logged and shown,
    and a request's texts must not leak through them.
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class StreamTranslator(Protocol):
    def feed(self, chunk: bytes) -> bytes:
        """Upstream SSE bytes (split anywhere, even mid-line; \\r\\n, \\r or \\n line ends) -> client SSE
        bytes, whole events only."""
        ...

    def finish(self) -> bytes:
        """At upstream EOF: whatever is left, with the closing events the upstream did not send."""
        ...


@dataclass(frozen=True)
class Translation(ABC):
    """A client API served by an upstream speaking another one."""

    client: str  # "responses" | "messages" | "chat.completions": the API the client speaks
    upstream: str  # the API the upstream speaks
    upstream_path: str  # "chat/completions" | "messages": relative, without /v1

    @abstractmethod
    def request(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The upstream's request for the client's; raises Untranslatable."""

    @abstractmethod
    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """The client's answer for the upstream's 200 JSON answer."""

    @abstractmethod
    def stream(self, request: dict[str, Any]) -> StreamTranslator:
        """A translator for one stream; `request` is the client's payload (model, stream options)."""

    @abstractmethod
    def error(self, status: int, body: Any) -> dict[str, Any]:
        """The client API's error body for an upstream error body (any JSON value, or None)."""
