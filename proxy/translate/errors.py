"""Error bodies in each API's shape, from whatever an upstream sent.

Chat Completions and Responses share OpenAI's `{"error": {"message", "type", "param", "code"}}`;
Messages uses Anthropic's `{"type": "error", "error": {"type", "message"}}`. The upstream's message is
kept (the gateway relays untranslated upstream errors as they are too); a body without one (not JSON,
HTML from a load balancer, None) gets a message naming only the HTTP status.

| HTTP status | Anthropic `error.type`  | OpenAI `error.type`     |
|-------------|-------------------------|-------------------------|
| 400 (other 4xx) | invalid_request_error | invalid_request_error |
| 401         | authentication_error    | authentication_error    |
| 402         | billing_error           | insufficient_quota      |
| 403         | permission_error        | permission_error        |
| 404         | not_found_error         | not_found_error         |
| 413         | request_too_large       | invalid_request_error   |
| 429         | rate_limit_error        | rate_limit_error        |
| 504         | timeout_error           | server_error            |
| 529         | overloaded_error        | server_error            |
| other 5xx   | api_error               | server_error            |
"""

from __future__ import annotations

from typing import Any

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def anthropic_type(status: int) -> str:
    if status in _ANTHROPIC_TYPES:
        return _ANTHROPIC_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def status_of(anthropic_error_type: Any) -> int:
    """The HTTP status Anthropic answers with for an error type (mid-stream errors carry only the type)."""
    for status, name in _ANTHROPIC_TYPES.items():
        if name == anthropic_error_type:
            return status
    return 500


def openai_type(status: int) -> str:
    if status in _OPENAI_TYPES:
        return _OPENAI_TYPES[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def upstream_message(status: int, body: Any) -> str:
    """The upstream's own error message (both shapes keep it at `error.message`), else a generic one."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
        return str(error["message"])
    if isinstance(error, str) and error:  # some servers answer {"error": "text"}
        return error
    return f"The upstream answered HTTP {status}."


def openai_error(status: int, body: Any) -> dict[str, Any]:
    """OpenAI's error shape; an OpenAI-shaped body keeps its type, param and code."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and "type" in error and body.get("type") != "error":
        return {
            "error": {
                "message": upstream_message(status, body),
                "type": _text_or(error.get("type"), openai_type(status)),
                "param": _text_or(error.get("param"), None),
                "code": _text_or(error.get("code"), None),
            }
        }
    return openai_error_body(upstream_message(status, body), openai_type(status))


def openai_error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def anthropic_error(status: int, body: Any) -> dict[str, Any]:
    """Anthropic's error shape; an Anthropic-shaped body keeps its type."""
    error = body.get("error") if isinstance(body, dict) else None
    type_ = anthropic_type(status)
    if isinstance(body, dict) and body.get("type") == "error" and isinstance(error, dict):
        type_ = _text_or(error.get("type"), type_) or type_
    return anthropic_error_body(upstream_message(status, body), type_)


def anthropic_error_body(message: str, type_: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


def _text_or(value: Any, default: str | None) -> str | None:
    return value if isinstance(value, str) and value else default
