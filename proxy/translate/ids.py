"""Ids for translated answers, derived from the upstream's so that logs on both sides line up.

`chatcmpl-abc` becomes `msg_abc` or `resp_abc` and back; an upstream answer without an id gets a random
one (every answer needs one, and clients use it as a key).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

_PREFIXES = ("chatcmpl-", "msg_", "resp_")
# Anthropic accepts tool_use ids of these characters only; OpenAI-compatible servers are less strict.
_NOT_TOOL_ID = re.compile(r"[^a-zA-Z0-9_-]")


def core(upstream_id: Any) -> str:
    """The upstream id without its API's prefix; a fresh random one when there is none."""
    if isinstance(upstream_id, str) and upstream_id:
        for prefix in _PREFIXES:
            if upstream_id.startswith(prefix) and len(upstream_id) > len(prefix):
                return upstream_id[len(prefix) :]
        return upstream_id
    return uuid.uuid4().hex


def chat_id(upstream_id: Any) -> str:
    return "chatcmpl-" + core(upstream_id)


def message_id(upstream_id: Any) -> str:
    return "msg_" + core(upstream_id)


def response_id(upstream_id: Any) -> str:
    return "resp_" + core(upstream_id)


def tool_use_id(call_id: str) -> str:
    """A tool call id Anthropic accepts; the same input always gives the same id, so a tool_use and its
    tool_result still match."""
    return _NOT_TOOL_ID.sub("_", call_id)
