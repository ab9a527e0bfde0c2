"""Request validation: just enough of OpenAI's schema to fail early with a clear 400.

Warden checks the fields it acts on and the shapes every upstream requires; anything else is
passed through untouched so new OpenAI parameters work the day they ship.
"""

from __future__ import annotations

from typing import Any

from proxy.errors import bad_request
from proxy.jsonbody import NotJson, parse_json

MAX_N = 128


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise bad_request("The request body is empty; send a JSON object.")
    try:
        payload = parse_json(raw)
    except NotJson as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise bad_request("The request body must be a JSON object.")
    return payload


def check_common(payload: dict[str, Any]) -> str:
    """Check fields shared by every model route; return the model name."""
    model = payload.get("model")
    if model is None:
        raise bad_request("Missing required parameter: 'model'.", param="model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("'model' must be a non-empty string.", param="model")
    stream = payload.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise bad_request("'stream' must be a boolean.", param="stream")
    options = payload.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise bad_request("'stream_options' must be an object.", param="stream_options")
        if not stream:
            raise bad_request(
                "'stream_options' is only allowed when 'stream' is true.", param="stream_options"
            )
        include = options.get("include_usage")
        if include is not None and not isinstance(include, bool):
            raise bad_request("'stream_options.include_usage' must be a boolean.", param="stream_options")
    n = payload.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N):
        raise bad_request(f"'n' must be an integer between 1 and {MAX_N}.", param="n")
    return model


def check_chat(payload: dict[str, Any]) -> str:
    model = check_common(payload)
    messages = payload.get("messages")
    if messages is None:
        raise bad_request("Missing required parameter: 'messages'.", param="messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise bad_request(f"'messages[{index}]' must be an object.", param=f"messages[{index}]")
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise bad_request(
                f"'messages[{index}].role' must be a non-empty string.", param=f"messages[{index}].role"
            )
    tools = payload.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise bad_request("'tools' must be an array.", param="tools")
    response_format = payload.get("response_format")
    if response_format is not None and not isinstance(response_format, dict):
        raise bad_request("'response_format' must be an object.", param="response_format")
    return model


def check_completion(payload: dict[str, Any]) -> str:
    model = check_common(payload)
    prompt = payload.get("prompt")
    if prompt is None:
        raise bad_request("Missing required parameter: 'prompt'.", param="prompt")
    if not isinstance(prompt, str | list):
        raise bad_request("'prompt' must be a string or an array.", param="prompt")
    return model


def check_embedding(payload: dict[str, Any]) -> str:
    model = check_common(payload)
    if payload.get("stream"):
        raise bad_request("Embeddings cannot be streamed.", param="stream")
    value = payload.get("input")
    if value is None:
        raise bad_request("Missing required parameter: 'input'.", param="input")
    if not isinstance(value, str | list) or (isinstance(value, list) and not value):
        raise bad_request("'input' must be a string or a non-empty array.", param="input")
    return model
