"""Secrets and credentials: API keys, tokens, private keys and passwords written into URLs."""

from __future__ import annotations

import re
from typing import Any

from policies.document import ParamError
from policies.findings import Finding
from policies.scanners import known_keys, regex, string_list

# kind -> pattern. Prefixed formats only, so ordinary text and hashes do not trip them.
PATTERNS: dict[str, str] = {
    "aws_access_key": r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    "openai_key": r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}\b",
    "anthropic_key": r"\bsk-ant-[A-Za-z0-9_\-]{20,}\b",
    "github_token": r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{40,}\b",
    "gitlab_token": r"\bglpat-[A-Za-z0-9_\-]{20,}\b",
    "slack_token": r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",
    "stripe_key": r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b",
    "google_api_key": r"\bAIza[0-9A-Za-z_\-]{35}\b",
    "warden_key": r"\bwdn-[A-Za-z0-9_\-]{20,}\b",
    "jwt": r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\b",
    "private_key": r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----",
    "password_in_url": r"\b[a-z][a-z0-9+.\-]{1,15}://[^\s/:@]{1,64}:[^\s/@]{1,128}@[^\s/]+",
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

    def __init__(self, patterns: dict[str, str]) -> None:
        self._patterns = [(kind, re.compile(p)) for kind, p in patterns.items()]

    def scan(self, text: str) -> list[Finding]:
        found = []
        for kind, pattern in self._patterns:
            for m in pattern.finditer(text):
                found.append(Finding(f"secret:{kind}", 1.0, m.start(), m.end(), "SECRET"))
        return found


def build(params: dict[str, Any], runtime: Any) -> SecretsScanner:
    kinds = params.get("kinds") or list(PATTERNS)
    if isinstance(kinds, str):
        kinds = [kinds]
    patterns = {k: PATTERNS[k] for k in kinds}
    patterns.update(params.get("custom") or {})
    return SecretsScanner(patterns)
