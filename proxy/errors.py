"""Errors in OpenAI's wire shape, so SDKs raise their usual exception classes."""

from __future__ import annotations

import json

from flask import Response


class ProxyError(Exception):
    """A request Warden answers with an error; `error_class` goes into the request log."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        error_class: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.error_class = error_class or code or type
        self.headers = headers or {}


def error_body(message: str, type: str, code: str | None = None, param: str | None = None) -> bytes:
    """The one place the error shape is written: SDKs read `type`, `code` and `param` from here."""
    return json.dumps({"error": {"message": message, "type": type, "param": param, "code": code}}).encode()


# Anthropic's error types by status; its SDK picks its exception class from the status and shows `type`.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def anthropic_error_body(status: int, message: str) -> bytes:
    """Anthropic's error shape (`/v1/messages`): `{"type": "error", "error": {"type", "message"}}`."""
    kind = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


def error_response(error: ProxyError, shape: str = "openai") -> Response:
    """`shape`: "openai", or "anthropic" on Anthropic's routes (Warden's code and param go in the
    message there, as that shape has no fields for them)."""
    if shape == "anthropic":
        detail = f" [{error.code}]" if error.code else ""
        body = anthropic_error_body(error.status, error.message + detail)
    else:
        body = error_body(error.message, error.type, error.code, error.param)
    response = Response(body, status=error.status, mimetype="application/json")
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ProxyError:
    return ProxyError(400, message, param=param, code=code, error_class="bad_request")


def unauthorized(message: str = "Invalid or missing API key.") -> ProxyError:
    return ProxyError(
        401,
        message,
        type="authentication_error",
        code="invalid_api_key",
        error_class="unauthorized",
        headers={"WWW-Authenticate": "Bearer"},
    )


def access_error(status: int, message: str, code: str) -> Response:
    """An error of the people-facing surfaces (admin API, pages' JSON, policy API)."""
    return error_response(ProxyError(status, message, type="access_error", code=code))
