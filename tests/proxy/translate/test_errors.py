"""Error bodies: each API's shape from whatever the upstream sent, statuses mapped both ways."""

from __future__ import annotations

from typing import Any

import pytest
from anthropic.types import ErrorResponse

from proxy.translate.errors import anthropic_error, anthropic_type, openai_error, openai_type, status_of


@pytest.mark.parametrize(
    ("status", "anthropic", "openai"),
    [
        (400, "invalid_request_error", "invalid_request_error"),
        (401, "authentication_error", "authentication_error"),
        (403, "permission_error", "permission_error"),
        (404, "not_found_error", "not_found_error"),
        (413, "request_too_large", "invalid_request_error"),
        (422, "invalid_request_error", "invalid_request_error"),
        (429, "rate_limit_error", "rate_limit_error"),
        (500, "api_error", "server_error"),
        (504, "timeout_error", "server_error"),
        (529, "overloaded_error", "server_error"),
    ],
)
def test_status_mapping(status: int, anthropic: str, openai: str) -> None:
    assert anthropic_type(status) == anthropic
    assert openai_type(status) == openai


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 504, 529])
def test_status_of_reverses_the_anthropic_mapping(status: int) -> None:
    assert status_of(anthropic_type(status)) == status
    assert status_of("something new") == 500


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "m", "type": "invalid_request_error", "param": "x", "code": "c"}},
        {"type": "error", "error": {"type": "not_found_error", "message": "m"}},
        {"error": "m"},
    ],
)
def test_the_upstream_message_is_kept_in_both_shapes(body: Any) -> None:
    assert openai_error(404, body)["error"]["message"] == "m"
    translated = anthropic_error(404, body)
    assert ErrorResponse.model_validate(translated).error.message == "m"


def test_an_openai_body_keeps_its_fields() -> None:
    body = {"error": {"message": "m", "type": "tokens", "param": "messages", "code": "rate_limit_exceeded"}}
    assert openai_error(429, body) == body


def test_an_anthropic_body_keeps_its_type() -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    assert anthropic_error(503, body) == body


@pytest.mark.parametrize(
    "body", [None, "<html>502</html>", [1, 2], {"detail": "x"}, {"error": {"message": ""}}]
)
def test_bodies_without_a_message_get_one_naming_the_status(body: Any) -> None:
    assert openai_error(502, body)["error"]["message"] == "The upstream answered HTTP 502."
    assert anthropic_error(502, body) == {
        "type": "error",
        "error": {"type": "api_error", "message": "The upstream answered HTTP 502."},
    }
