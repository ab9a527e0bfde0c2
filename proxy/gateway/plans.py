"""Per request: what each upstream is sent, and how its answer comes back in the client's API.

An upstream that speaks the client's API gets the (checked) request as it is. One that does not gets it
translated (`proxy.translate`) to an API it speaks, and its answers, streams and errors are translated
back before the output rules see them: the policy always reads the client's own format, so the checks are
the same whichever upstream answers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from proxy.errors import ProxyError, bad_request
from proxy.formats import WireFormat
from proxy.formats.base import dumps
from proxy.jsonbody import parse_json
from proxy.translate import Translation, Untranslatable, translation
from proxy.upstreams.http import Upstream, UpstreamReply, UpstreamStream

# What an upstream that does not say otherwise speaks (an OpenAI-compatible HTTP API).
NATIVE_DEFAULT = frozenset({"chat.completions", "completions", "embeddings", "responses"})
# The APIs a client's request may be translated to, in order of preference.
_TARGETS = ("chat.completions", "messages")
# Client headers an API needs passed on to an upstream that speaks it (beta features are opted into
# this way); never credentials, which are the upstream's own.
_PASSED_BY_API = {"messages": ("anthropic-beta",)}
PASSED_HEADERS = frozenset(h for names in _PASSED_BY_API.values() for h in names)
# Streams whose usage chunk Warden may ask for on its own behalf (and remove again).
_USAGE_CHUNK_ROUTES = frozenset({"chat.completions", "completions"})


class Plans:
    def __init__(
        self,
        fmt: WireFormat,
        payload: dict[str, Any],
        raw: bytes,
        stream_usage: dict[str, bool],
        *,
        streamed: bool,
        client_headers: Mapping[str, str] | None = None,
    ) -> None:
        self._fmt = fmt
        self._payload = payload
        self._raw = raw
        self._stream_usage = stream_usage
        self._streamed = streamed
        # Validated only where it is an OpenAI field: on the Messages API `"stream_options": 2` passes on.
        options = payload.get("stream_options")
        self._client_wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        self._with_usage: bytes | None = None
        self._translations: dict[str, Translation | None] = {}
        self._refused: Untranslatable | None = None
        api = getattr(fmt, "api", fmt.route)
        headers = client_headers or {}
        self._passed = {h: headers[h] for h in _PASSED_BY_API.get(api, ()) if h in headers}

    def __call__(self, upstream: Upstream) -> tuple[str, bytes, Mapping[str, str]] | None:
        """The path and body for `upstream`, or None when it cannot serve this request."""
        apis = getattr(upstream, "apis", NATIVE_DEFAULT)
        fmt = self._fmt
        if fmt.route in apis or getattr(fmt, "api", None) in apis:
            self._translations[upstream.name] = None
            return fmt.path, self._native_body(upstream.name), self._passed
        for target in _TARGETS:
            if target not in apis:
                continue
            try:
                found = translation(fmt.route, target)
            except KeyError:
                continue
            if found is None:
                continue
            try:
                translated = found.request(self._payload)
            except Untranslatable as refused:
                self._refused = refused
                return None
            self._translations[upstream.name] = found
            return found.upstream_path, dumps(translated).encode(), {}
        return None

    def no_route(self, model: str) -> ProxyError:
        if self._refused is not None:
            return bad_request(str(self._refused), param=self._refused.param, code="unsupported_parameter")
        return bad_request(
            f"The model '{model}' is not served on /v1/{self._fmt.path}: none of its upstreams speaks this "
            "API or one Warden translates it to.",
            param="model",
            code="unsupported_api",
        )

    @property
    def client_wants_usage(self) -> bool:
        """The client asked for the stream's usage event (`stream_options.include_usage`)."""
        return self._client_wants_usage

    @property
    def usage_droppable(self) -> bool:
        """A usage-only event of this API's streams may be removed (chat and completions)."""
        return self._fmt.route in _USAGE_CHUNK_ROUTES

    def injected_usage(self, upstream: str) -> bool:
        """True when the stream's usage chunk was asked for by Warden, not the client."""
        return self._translations.get(upstream) is None and self._native_body(upstream) is not self._raw

    def answer(self, upstream: str, reply: UpstreamReply) -> UpstreamReply:
        """A JSON answer or error, in the client's API."""
        found = self._translations.get(upstream)
        if found is None:
            return reply
        try:
            parsed = parse_json(reply.body) if reply.body else None
        except ValueError:
            return reply  # not JSON: the forwarder answers 502 as for any upstream
        try:
            translated = found.answer(parsed) if reply.status == 200 and isinstance(parsed, dict) else None
            if translated is None:
                translated = found.error(reply.status, parsed)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ProxyError(
                502,
                f"Upstream '{upstream}' returned an answer Warden could not translate.",
                type="upstream_error",
                code="upstream_bad_response",
            ) from None
        return dataclasses.replace(reply, body=dumps(translated).encode())

    def stream(self, upstream: str, stream: UpstreamStream) -> UpstreamStream:
        """A stream in the client's API."""
        found = self._translations.get(upstream)
        if found is None:
            return stream
        translator = found.stream(self._payload)

        def chunks(source: Iterator[bytes]) -> Iterator[bytes]:
            for chunk in source:
                out = translator.feed(chunk)
                if out:
                    yield out
            tail = translator.finish()
            if tail:
                yield tail

        return dataclasses.replace(stream, chunks=chunks(stream.chunks))

    def _native_body(self, upstream: str) -> bytes:
        if (
            not self._streamed
            or self._fmt.route not in _USAGE_CHUNK_ROUTES
            or self._client_wants_usage
            or not self._stream_usage.get(upstream, False)
        ):
            return self._raw
        if self._with_usage is None:
            # Usage is what makes a stream's tokens and cost known; asked for on Warden's own behalf,
            # its extra event is removed before the client sees it.
            options = dict(self._payload.get("stream_options") or {}, include_usage=True)
            self._with_usage = dumps({**self._payload, "stream_options": options}).encode()
        return self._with_usage
