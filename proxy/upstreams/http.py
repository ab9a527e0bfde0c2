"""Upstreams: where a request goes after Warden. One small seam, an HTTP implementation behind it.

`HttpUpstream` speaks to OpenAI-compatible APIs; providers with another URL layout or another way of
signing requests (`anthropic.py`, `azure.py`) subclass it and change only `_auth_headers`, `_base_url` and
`_target`, so pooling, timeouts, streaming and failure kinds stay in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from time import perf_counter
from typing import ClassVar, Protocol

import httpx

from proxy.settings import UpstreamSettings

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
    _response: httpx.Response | None = field(default=None, repr=False)
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
    """Any OpenAI-compatible HTTP API, through one pooled httpx client per process."""

    default_apis: ClassVar[frozenset[str]] = OPENAI_APIS

    def __init__(self, settings: UpstreamSettings, transport: httpx.BaseTransport | None = None) -> None:
        self.name = settings.name
        self.settings = settings
        self.apis: frozenset[str] = frozenset(settings.apis) or self.default_apis
        headers = {
            "content-type": "application/json",
            # Relaying compressed SSE byte-for-byte breaks clients; ask for plain bytes.
            "accept-encoding": "identity",
            "user-agent": "warden-proxy",
            **self._auth_headers(settings),
        }
        self._client = httpx.Client(
            base_url=self._base_url(settings).rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(
                connect=settings.connect_timeout,
                read=settings.read_timeout,
                write=settings.read_timeout,
                pool=settings.connect_timeout,
            ),
            limits=httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.max_connections,
                keepalive_expiry=30,
            ),
            transport=transport,
            trust_env=False,
        )

    def _auth_headers(self, settings: UpstreamSettings) -> dict[str, str]:
        """The headers that carry the credentials (and any version pin) on every request."""
        return {"authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}

    def _base_url(self, settings: UpstreamSettings) -> str:
        return settings.base_url

    def _target(self, route: str, body: bytes) -> tuple[str, bytes]:
        """Where `route` ("chat/completions") lives under the base URL, and the body to send there."""
        return route, body

    def complete(
        self, route: str, body: bytes, request_id: str, headers: Mapping[str, str] | None = None
    ) -> UpstreamReply:
        """`headers`: client headers the API needs passed on (e.g. `anthropic-beta`), never credentials."""
        timer = _WaitTimer()
        url, body = self._target(route, body)
        try:
            response = self._client.post(
                url,
                content=body,
                headers={**(headers or {}), "x-request-id": request_id},
                extensions={"trace": timer},
            )
        except httpx.HTTPError as exc:
            raise self._failure(exc) from None
        return UpstreamReply(
            response.status_code,
            relayed_headers(response.headers),
            response.content,
            timer.waited(),
            timer.head(),
        )

    def stream(
        self, route: str, body: bytes, request_id: str, headers: Mapping[str, str] | None = None
    ) -> UpstreamStream:
        timer = _WaitTimer()
        url, body = self._target(route, body)
        request = self._client.build_request(
            "POST",
            url,
            content=body,
            headers={**(headers or {}), "x-request-id": request_id, "accept": "text/event-stream"},
            extensions={"trace": timer},
        )
        try:
            response = self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._failure(exc) from None
        return UpstreamStream(
            response.status_code,
            relayed_headers(response.headers),
            self._chunks(response),
            response,
            timer.waited(),
        )

    def _chunks(self, response: httpx.Response) -> Iterator[bytes]:
        try:
            yield from response.iter_raw()
        except httpx.HTTPError as exc:
            raise self._failure(exc) from None
        finally:
            response.close()

    def _failure(self, exc: httpx.HTTPError) -> UpstreamFailure:
        if isinstance(exc, httpx.TimeoutException):
            kind = "timeout"
        elif isinstance(exc, httpx.ConnectError | httpx.RemoteProtocolError | httpx.ReadError):
            kind = "unreachable"
        else:
            kind = "bad_response"
        # The exception text is httpx's; it carries no request body and no credentials.
        return UpstreamFailure(kind, self.name, f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        self._client.close()


class _WaitTimer:
    """An httpx trace hook that keeps the time between request sent and response received."""

    __slots__ = ("marks",)

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}

    def __call__(self, name: str, info: object) -> None:
        if name in _WAIT_EVENTS:
            self.marks[name] = perf_counter()

    def head(self) -> float:
        """Request sent to response headers received; 0 when a mark is missing."""
        m = self.marks
        sent = m.get("http11.send_request_body.complete")
        head = m.get("http11.receive_response_headers.complete")
        return head - sent if sent is not None and head is not None else 0.0

    def waited(self) -> float:
        m = self.marks
        total = 0.0
        if "http11.send_request_body.complete" in m and "http11.receive_response_headers.complete" in m:
            total += m["http11.receive_response_headers.complete"] - m["http11.send_request_body.complete"]
        if "http11.receive_response_body.started" in m and "http11.receive_response_body.complete" in m:
            total += m["http11.receive_response_body.complete"] - m["http11.receive_response_body.started"]
        return total


_WAIT_EVENTS = frozenset(
    {
        "http11.send_request_body.complete",
        "http11.receive_response_headers.complete",
        "http11.receive_response_body.started",
        "http11.receive_response_body.complete",
    }
)


def relayed_headers(headers: httpx.Headers) -> dict[str, str]:
    kept = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in RELAYED_HEADERS or lower.startswith(RELAYED_PREFIXES):
            kept[lower] = value
    return kept
