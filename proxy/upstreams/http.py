"""Upstreams: where a request goes after Warden. One small seam, an HTTP implementation behind it.

`HttpUpstream` speaks to OpenAI-compatible APIs; providers with another URL layout or another way of
signing requests (`anthropic.py`, `azure.py`) subclass it and change only `_auth_headers`, `_base_url` and
`_target`, so pooling, timeouts, streaming and failure kinds stay in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from proxy.settings import UpstreamSettings
from proxy.upstreams.pool import HttpPool, PooledResponse, PoolError

# Upstream response headers a client may rely on (rate limits, request ids); others are dropped.
RELAYED_HEADERS = ("retry-after", "openai-processing-ms", "x-request-id", "request-id")
RELAYED_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")
# What an OpenAI-compatible API speaks natively, as route names (`proxy.settings.UPSTREAM_APIS`).
OPENAI_APIS = frozenset({"chat.completions", "completions", "embeddings", "responses"})


class UpstreamFailure(Exception):
    """The upstream could not be reached or did not answer properly; never an HTTP status."""

    def __init__(self, kind: str, upstream: str, detail: str) -> None:
        super().__init__(f"upstream {upstream!r}: {detail}")
        self.kind = kind  # "unreachable" | "timeout" | "bad_response"
        self.upstream = upstream
        self.detail = detail


@dataclass(slots=True)
class UpstreamReply:
    status: int
    headers: dict[str, str]
    body: bytes
    # Seconds spent waiting on the upstream itself; the HTTP client's own CPU time is excluded so
    # that Warden's self-reported overhead counts it (it is Warden's work, not the upstream's).
    wait_s: float = 0.0
    # Of which until the response headers arrived (the router's latency figure); 0: not measured.
    head_s: float = 0.0


@dataclass(slots=True)
class UpstreamStream:
    """An open streamed response; iterate `chunks`, and always `close()`."""

    status: int
    headers: dict[str, str]
    chunks: Iterator[bytes]
    _response: PooledResponse | None = field(default=None, repr=False)
    wait_s: float = 0.0  # until the response headers arrived; see UpstreamReply.wait_s
    # Called by `close()` (the router's in-flight count); it must be safe to call more than once.
    on_close: Callable[[], None] | None = field(default=None, repr=False)

    def read_all(self) -> bytes:
        return b"".join(self.chunks)

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
        if self.on_close is not None:
            self.on_close()


class Upstream(Protocol):
    name: str
    # The APIs (route names: "chat.completions", "messages", ...) this upstream answers natively;
    # a request in another API has to be translated before it is sent here.
    apis: frozenset[str]

    def complete(
        self, route: str, body: bytes, request_id: str, headers: Mapping[str, str] | None = None
    ) -> UpstreamReply: ...

    def stream(
        self, route: str, body: bytes, request_id: str, headers: Mapping[str, str] | None = None
    ) -> UpstreamStream: ...

    def close(self) -> None: ...


class HttpUpstream:
    """Any OpenAI-compatible HTTP API, through one connection pool per upstream and process."""

    default_apis: ClassVar[frozenset[str]] = OPENAI_APIS

    def __init__(self, settings: UpstreamSettings) -> None:
        self.name = settings.name
        self.settings = settings
        self.apis: frozenset[str] = frozenset(settings.apis) or self.default_apis
        self._headers = {
            "content-type": "application/json",
            # Relaying compressed SSE byte-for-byte breaks clients; ask for plain bytes.
            "accept-encoding": "identity",
            "user-agent": "warden-proxy",
            **self._auth_headers(settings),
        }
        self._pool = HttpPool(
            self._base_url(settings),
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_connections=settings.max_connections,
        )

    def _auth_headers(self, settings: UpstreamSettings) -> dict[str, str]:
        """The headers that carry the credentials (and any version pin) on every request."""
        return {"authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}

    def _base_url(self, settings: UpstreamSettings) -> str:
        return settings.base_url

    def _target(self, route: str, body: bytes) -> tuple[str, bytes]:
        """Where `route` ("chat/completions") lives under the base URL, and the body to send there."""
        return route, body

    def url_for(self, route: str) -> str:
        """The full URL a request for `route` goes to (for logs and tests; nothing is sent)."""
        return self._pool.url(self._target(route, b"")[0])

    def complete(
        self, route: str, body: bytes, request_id: str, headers: Mapping[str, str] | None = None
    ) -> UpstreamReply:
        """`headers`: client headers the API needs passed on (e.g. `anthropic-beta`), never credentials."""
        response = self._send(route, body, {**(headers or {}), "x-request-id": request_id})
        try:
            content = response.read()
        except PoolError as exc:
            raise UpstreamFailure(exc.kind, self.name, str(exc)) from None
        return UpstreamReply(
            response.status, relayed_headers(response.headers), content, response.wait_s, response.head_s
        )

    def stream(
        self, route: str, body: bytes, request_id: str, headers: Mapping[str, str] | None = None
    ) -> UpstreamStream:
        extra = {**(headers or {}), "x-request-id": request_id, "accept": "text/event-stream"}
        response = self._send(route, body, extra)
        return UpstreamStream(
            response.status,
            relayed_headers(response.headers),
            self._chunks(response),
            response,
            response.head_s,
        )

    def _send(self, route: str, body: bytes, extra: Mapping[str, str]) -> PooledResponse:
        path, body = self._target(route, body)
        try:
            return self._pool.request("POST", path, body, {**self._headers, **extra})
        except PoolError as exc:
            raise UpstreamFailure(exc.kind, self.name, str(exc)) from None

    def _chunks(self, response: PooledResponse) -> Iterator[bytes]:
        try:
            yield from response.chunks()
        except PoolError as exc:
            raise UpstreamFailure(exc.kind, self.name, str(exc)) from None

    def close(self) -> None:
        self._pool.close()


def relayed_headers(headers: Mapping[str, str]) -> dict[str, str]:
    kept = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in RELAYED_HEADERS or lower.startswith(RELAYED_PREFIXES):
            kept[lower] = value
    return kept
