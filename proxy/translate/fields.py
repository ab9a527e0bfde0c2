"""Request and answer fields: reading JSON Warden did not write, and deciding which top-level request
fields a target API can take.

Reading: a dict or list where one belongs, else an empty one. Upstreams and clients send malformed
bodies; a translation reads them as if the misshapen part were absent instead of raising.

Deciding: every top-level field is mapped, dropped (documented, harmless), accepted only at the value
that asks for nothing (`n: 1`), or refused. A field no rule names is refused too: silently losing a
parameter the client relies on is worse than a clear 400. A null field is always accepted: clients
send unset options as null.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy.translate.base import Untranslatable

# Field names are echoed in refusals; anything else a client sent as a key is not.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def first_choice(body: dict[str, Any]) -> dict[str, Any]:
    """The first choice of a chat answer or chunk (translated requests never ask for more)."""
    choices = as_list(body.get("choices"))
    return as_dict(choices[0]) if choices else {}


@dataclass(frozen=True)
class FieldRules:
    target: str  # the API refused fields are missing from, for the message: "Anthropic's Messages API"
    mapped: frozenset[str]
    dropped: frozenset[str] = frozenset()
    harmless: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)  # field -> accepted values
    why: Mapping[str, str] = field(default_factory=dict)  # field -> the refusal's message

    def check(self, payload: dict[str, Any]) -> None:
        """Raise Untranslatable for the first field the target cannot take."""
        for key, value in payload.items():
            if value is None or key in self.mapped or key in self.dropped:
                continue
            if key in self.harmless and value in self.harmless[key]:
                continue
            if key in self.why:
                raise Untranslatable(self.why[key], key)
            if _PLAIN_NAME.fullmatch(key):
                raise Untranslatable(f"'{key}' has no equivalent in {self.target}.", key)
            raise Untranslatable(f"A request field has no equivalent in {self.target}.")
