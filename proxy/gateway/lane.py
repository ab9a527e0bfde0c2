"""The model routes without Flask's dispatch: a WSGI layer that hands `POST /v1/<api>` straight to the
`Forwarder`, and everything else to Flask.

Flask's request and app contexts, URL matching, session opening, before/after hooks and response
finalisation cost about an eighth of a worker's CPU per proxied request (issue 16), and none of them
does anything for these routes: they authenticate by API key, never by session; the guard's
`before_request` skips them; `after_request` only adds the headers every response carries
(`web_headers.ALWAYS`), added here too; the forwarder turns every exception into an answer in the
route's own error shape. Only exact paths and POST take the lane, so a wrong method, a trailing slash or
an unknown path still get Flask's answers (405, `unsupported_endpoint`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Request

from proxy.formats import served_at
from proxy.gateway.forwarder import Forwarder
from proxy.web_headers import ALWAYS

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ModelLane:
    """WSGI middleware: model routes to the forwarder, the rest to `app`."""

    def __init__(self, app: WsgiApp, forwarder: Forwarder, max_body_bytes: int) -> None:
        self.app = app
        self.forwarder = forwarder
        self.max_body_bytes = max_body_bytes
        self.headers = list(ALWAYS.items())

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        fmt = served_at(environ.get("PATH_INFO", ""))
        if fmt is None or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        request = Request(environ)
        # Outside an app context Flask's Request would not see MAX_CONTENT_LENGTH: set it per request.
        request.max_content_length = self.max_body_bytes
        response = self.forwarder.forward(request, fmt.route)
        headers = response.headers
        for name, value in self.headers:
            headers.setdefault(name, value)
        return response(environ, start_response)
