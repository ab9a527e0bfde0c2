"""What every answer to a fuzzed request must be (README, "What the proxy does" and "People, roles and
the admin API"): never a 5xx; Warden's headers on everything Warden answered; errors in the documented
shape for the path; no local redirect turned open; no hostile value echoed unescaped into a page."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from tests.fuzz.cases import Case
from tests.fuzz.values import MARKER
from tests.fuzz.wire import Answer

MODEL_PATHS = ("chat/completions", "completions", "embeddings", "responses", "messages", "models")
ANTHROPIC_PATHS = frozenset(
    {"/v1/messages", "/v1/messages/count_tokens", "/messages", "/messages/count_tokens"}
)
PAGES = ("/login", "/logout", "/transcripts/", "/dashboards/", "/prompts")
# What the HTTP server in front of Warden answers itself to a request it cannot parse (Warden never
# sees it): bad request line or header block, URI or header too long, too many headers.
SERVER_REFUSALS = frozenset({400, 414, 431})


def path_of(case: Case) -> str:
    target = case.request.target.decode("latin-1")
    return urllib.parse.unquote(urllib.parse.urlsplit(target).path, errors="replace")


def problems(case: Case, answer: Answer) -> list[str]:
    """What is wrong with `answer` to `case` (empty: nothing)."""
    status = answer.status
    if status >= 500:
        return [f"status {status}"]
    if not answer.header("x-content-type-options"):
        # Not through Warden's app: only a request whose framing is broken may be refused that way.
        if case.framing and status in SERVER_REFUSALS:
            return []
        return [f"status {status} without Warden's headers"]
    found: list[str] = []
    location = answer.header("location")
    if location and _off_site(case, location):
        found.append(f"redirect off the site: {location!r}")
    content_type = answer.header("content-type")
    if content_type.startswith("text/html") and MARKER.encode() in answer.body:
        found.append("a hostile value echoed unescaped into a page")
    if content_type.startswith("application/json") and answer.body:
        try:
            document = json.loads(answer.body)
        except ValueError:
            return [*found, "content-type JSON, body not JSON"]
    else:
        document = None
    if status >= 400 and case.request.method != b"HEAD":
        found += _error_shape(case, answer, document)
    return found


def _error_shape(case: Case, answer: Answer, document: Any) -> list[str]:
    path = path_of(case)
    anthropic_asked = "anthropic-version" in {n.decode("latin-1").lower() for n, _ in case.request.headers}
    # /v1/warden/... included: Warden's own JSON errors there are in OpenAI's shape too.
    model_api = path.startswith("/v1/") or path.lstrip("/").startswith(MODEL_PATHS)
    if path in ANTHROPIC_PATHS:
        return [] if _anthropic(document) else [f"not Anthropic's error shape: {answer.body[:300]!r}"]
    if model_api:
        if _openai(document) or (anthropic_asked and _anthropic(document)):
            return []
        return [f"not OpenAI's error shape: {answer.body[:300]!r}"]
    if path == "/" or path.startswith(PAGES):
        if answer.header("content-type").startswith("text/html") or _people(document):
            return []
        return [f"page error neither HTML nor JSON error: {answer.body[:300]!r}"]
    return [] if _people(document) else [f"not the JSON error shape: {answer.body[:300]!r}"]


def _off_site(case: Case, location: str) -> bool:
    """A redirect to another site than the one the client asked for (its own Host header)."""
    if location.startswith("/"):
        return location.startswith(("//", "/\\"))
    hosts = {v.decode("latin-1") for n, v in case.request.headers if n.lower() == b"host"}
    if not case.request.verbatim:
        hosts.add("127.0.0.1")
    return urllib.parse.urlsplit(location).netloc not in hosts


def _openai(document: Any) -> bool:
    if not isinstance(document, dict) or set(document) != {"error"}:
        return False
    error = document["error"]
    return (
        isinstance(error, dict)
        and {"message", "type", "param", "code"} <= set(error)
        and isinstance(error["message"], str)
        and isinstance(error["type"], str)
        and (error["param"] is None or isinstance(error["param"], str))
        and (error["code"] is None or isinstance(error["code"], str | int))
    )


def _anthropic(document: Any) -> bool:
    if not isinstance(document, dict) or document.get("type") != "error":
        return False
    error = document.get("error")
    return (
        isinstance(error, dict)
        and isinstance(error.get("type"), str)
        and isinstance(error.get("message"), str)
    )


def _people(document: Any) -> bool:
    """The admin API's and pages' JSON errors: `{"error": {"message", "code"}}`."""
    error = document.get("error") if isinstance(document, dict) else None
    return (
        isinstance(error, dict)
        and isinstance(error.get("message"), str)
        and isinstance(error.get("code"), str)
    )
