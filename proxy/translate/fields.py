"""Reading JSON that Warden did not write: a dict or list where one belongs, else an empty one.

Upstreams and clients send malformed bodies; a translation reads them as if the misshapen part were
absent instead of raising (the upstream or the client then sees what is missing).
"""

from __future__ import annotations

from typing import Any


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def first_choice(body: dict[str, Any]) -> dict[str, Any]:
    """The first choice of a chat answer or chunk (translated requests never ask for more)."""
    choices = as_list(body.get("choices"))
    return as_dict(choices[0]) if choices else {}
