"""Request-level rules: how much a prompt may hold, and which models a scope may call."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from policies.document import ParamError
from policies.findings import Finding
from policies.scanners import RequestFacts, known_keys, positive_int, string_list

if TYPE_CHECKING:
    from policies.runtime import Runtime


def check_max_input(params: dict[str, Any], stage: str, action: str) -> None:
    known_keys(params, ("chars", "tokens"))
    if not params:
        raise ParamError((), "give 'chars' or 'tokens' (or both)")
    for key in ("chars", "tokens"):
        if key in params:
            positive_int(params[key], (key,))


class MaxInput:
    """Tokens are estimated as UTF-8 bytes / 4 (rounded up): no tokenizer is model-independent, and an
    estimate that runs a little high is the safe side for a limit."""

    level = "request"
    windowed = False

    def __init__(self, chars: int | None, tokens: int | None) -> None:
        self._chars = chars
        self._tokens = tokens

    def scan_request(self, facts: RequestFacts) -> list[Finding]:
        found = []
        if self._chars is not None and facts.chars > self._chars:
            found.append(Finding("max_input:chars", 1.0))
        if self._tokens is not None and -(-facts.utf8_bytes // 4) > self._tokens:
            found.append(Finding("max_input:tokens", 1.0))
        return found


def build_max_input(params: dict[str, Any], runtime: Runtime) -> MaxInput:
    return MaxInput(params.get("chars"), params.get("tokens"))


def check_models(params: dict[str, Any], stage: str, action: str) -> None:
    known_keys(params, ("allow", "deny"))
    if not params:
        raise ParamError((), "give 'allow' or 'deny' (lists of model names; * and ? match)")
    for key in ("allow", "deny"):
        if key in params:
            string_list(params[key], (key,))


class ModelRule:
    level = "request"
    windowed = False

    def __init__(self, allow: list[str] | None, deny: list[str]) -> None:
        self._allow = allow
        self._deny = deny

    def scan_request(self, facts: RequestFacts) -> list[Finding]:
        denied = any(fnmatchcase(facts.model, p) for p in self._deny)
        if self._allow is not None and not any(fnmatchcase(facts.model, p) for p in self._allow):
            denied = True
        return [Finding("model_not_allowed", 1.0)] if denied else []


def build_models(params: dict[str, Any], runtime: Runtime) -> ModelRule:
    allow = params.get("allow")
    deny = params.get("deny") or []
    return ModelRule(
        [allow] if isinstance(allow, str) else allow, [deny] if isinstance(deny, str) else list(deny)
    )
