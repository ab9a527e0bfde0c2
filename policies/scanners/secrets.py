"""Secrets and credentials: API keys, tokens, private keys and passwords written into URLs."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from policies.document import ParamError
from policies.findings import Finding
from policies.scanners import UserPattern, known_keys, regex, string_list

if TYPE_CHECKING:
    from policies.runtime import Runtime

# kind -> pattern. Prefixed formats only, so ordinary text and hashes do not trip them.
# Linear by construction, whatever the text: `re` holds the GIL while it matches, so one backtracking
# pattern stops every thread of the worker (`"eyJ-" * 50000` once took seconds). A token may start only
# where a run of its characters starts (`_T`), and runs are consumed possessively (`{n,}+`): a failed
# attempt never rescans the run from a later start, nor backtracks into it.
_T = r"(?<![A-Za-z0-9_\-])"
PATTERNS: dict[str, str] = {
    "aws_access_key": r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    "openai_key": _T + r"sk-(?:proj-|svcacct-|admin-)?+[A-Za-z0-9_\-]{20,}+",
    "anthropic_key": _T + r"sk-ant-[A-Za-z0-9_\-]{20,}+",
    "github_token": _T
    + r"(?:(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}+|github_pat_[A-Za-z0-9_]{40,}+)(?![A-Za-z0-9_])",
    "gitlab_token": _T + r"glpat-[A-Za-z0-9_\-]{20,}+",
    "slack_token": _T + r"xox[abposr]-[A-Za-z0-9\-]{10,}+(?!_)",
    "stripe_key": _T + r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}+(?!_)",
    "google_api_key": r"\bAIza[0-9A-Za-z_\-]{35}\b",
    "warden_key": _T + r"wdn-[A-Za-z0-9_\-]{20,}+",
    "jwt": _T + r"eyJ[A-Za-z0-9_\-]{8,}+\.eyJ[A-Za-z0-9_\-]{8,}+\.[A-Za-z0-9_\-]{8,}+",
    "private_key": r"-----BEGIN (?:[A-Z]{1,24} ){0,4}PRIVATE KEY-----",
    "password_in_url": r"\b[a-z][a-z0-9+.\-]{1,15}://[^\s/:@]{1,64}:[^\s/@]{1,128}@[^\s/]++",
}
PARAMS = ("kinds", "custom")


def check(params: dict[str, Any], stage: str, action: str) -> None:
    known_keys(params, PARAMS)
    if "kinds" in params:
        for i, kind in enumerate(string_list(params["kinds"], ("kinds",))):
            if kind not in PATTERNS:
                raise ParamError(("kinds", i), f"unknown secret kind (known: {', '.join(PATTERNS)})")
    custom = params.get("custom") or {}
    if not isinstance(custom, dict):
        raise ParamError(("custom",), "must be a mapping kind -> regex")
    for name, pattern in custom.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", str(name)):
            raise ParamError(("custom", name), "kind names are lower-case letters, digits and _")
        regex(pattern, ("custom", name))


class SecretsScanner:
    level = "text"
    windowed = True

    def __init__(self, patterns: dict[str, str], custom: dict[str, str] | None = None) -> None:
        self._patterns: list[tuple[str, re.Pattern[str] | UserPattern]] = [
            (kind, re.compile(p)) for kind, p in patterns.items()
        ]
        self._patterns += [(kind, UserPattern(p)) for kind, p in (custom or {}).items()]

    def scan(self, text: str) -> list[Finding]:
        found = []
        for kind, pattern in self._patterns:
            for m in pattern.finditer(text):
                found.append(Finding(f"secret:{kind}", 1.0, m.start(), m.end(), "SECRET"))
        return found


def build(params: dict[str, Any], runtime: Runtime) -> SecretsScanner:
    kinds = params.get("kinds") or list(PATTERNS)
    if isinstance(kinds, str):
        kinds = [kinds]
    return SecretsScanner({k: PATTERNS[k] for k in kinds}, params.get("custom") or {})
