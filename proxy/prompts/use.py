"""A chat request that names a prompt: `"warden": {"prompt", "label" | "version", "variables"}`.

The prompt's rendered messages go before the client's own, and its model and parameters fill what the
client left out (what the client sends wins). This happens before the request is checked and governed,
so policies, the transcript and the cache key all see the messages the upstream will see. Lookups are
kept for a few seconds: a request must not wait on the metadata database, and a moved label reaches
every replica within `CACHE_S`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proxy.errors import ProxyError, bad_request
from proxy.identity.directory import IdentityError
from proxy.jsonbody import NotJson, parse_json
from proxy.prompts.render import RenderError
from proxy.prompts.store import PromptStore, Version

FIELDS = ("prompt", "label", "version", "variables")
# For clients that can set headers but not body fields; the body's `warden` field wins when both are sent.
PROMPT_HEADER = "x-warden-prompt"
CACHE_S = 2.0
_MAX_CACHED = 4096


@dataclass(frozen=True, slots=True)
class PromptUse:
    """What the request's row records: the prompt and the version that was rendered."""

    name: str
    version: int


class PromptResolver:
    """Versions by (tenant, prompt, label or number), each kept for `CACHE_S`."""

    def __init__(self, store: PromptStore, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: dict[tuple[str, str, str | None, int | None], tuple[float, Version]] = {}

    def get(self, tenant: str, name: str, label: str | None, number: int | None) -> Version:
        key = (tenant, name, label, number)
        now = self._clock()
        found = self._cached.get(key)
        if found is not None and found[0] > now:
            return found[1]
        version = self._store.get(tenant, name, label=label, number=number)
        with self._lock:
            if len(self._cached) >= _MAX_CACHED:
                self._cached.clear()
            self._cached[key] = (now + CACHE_S, version)
        return version


def prompt_options_from_headers(header: Callable[[str], str | None]) -> dict[str, Any]:
    """`x-warden-prompt: NAME`, optionally `x-warden-prompt-label: L` or `x-warden-prompt-version: N` and
    `x-warden-prompt-variables: {JSON object}`, as the body field would carry them."""
    options: dict[str, Any] = {"prompt": header(PROMPT_HEADER)}
    label, version, variables = (
        header(f"{PROMPT_HEADER}-{part}") for part in ("label", "version", "variables")
    )
    if label is not None:
        options["label"] = label
    if version is not None:
        if not version.isdigit():
            raise bad_request(
                f"'{PROMPT_HEADER}-version' must be a version number.", param=f"{PROMPT_HEADER}-version"
            )
        options["version"] = int(version)
    if variables is not None:
        try:
            options["variables"] = parse_json(variables.encode())
        except NotJson:
            raise bad_request(
                f"'{PROMPT_HEADER}-variables' must be a JSON object.", param=f"{PROMPT_HEADER}-variables"
            ) from None
    return options


def apply_prompt(
    resolver: PromptResolver, tenant: str, route: str, options: dict[str, Any], payload: dict[str, Any]
) -> PromptUse:
    """Render the named prompt into `payload` (changed in place) and take its fields out of `options`."""
    asked = {name: options.pop(name) for name in FIELDS if name in options}
    name = asked.get("prompt")
    if route != "chat.completions":
        raise bad_request("'warden.prompt' is served on /v1/chat/completions only.", param="warden.prompt")
    if not isinstance(name, str) or not name:
        raise bad_request("'warden.prompt' must name a prompt.", param="warden.prompt")
    label, number = asked.get("label"), asked.get("version")
    if label is not None and number is not None:
        raise bad_request("Send 'warden.label' or 'warden.version', not both.", param="warden.version")
    if label is not None and not isinstance(label, str):
        raise bad_request("'warden.label' must be a label name.", param="warden.label")
    if number is not None and (isinstance(number, bool) or not isinstance(number, int) or number < 1):
        raise bad_request("'warden.version' must be a version number.", param="warden.version")
    variables = asked.get("variables", {})
    if not isinstance(variables, dict):
        raise bad_request("'warden.variables' must be an object.", param="warden.variables")
    try:
        version = resolver.get(tenant, name, label, number)
    except IdentityError as exc:
        if exc.status != 404:
            raise bad_request(str(exc), param="warden.prompt") from None
        raise ProxyError(404, f"{exc}.", param="warden.prompt", code="prompt_not_found") from None
    try:
        rendered = version.render(variables)
    except RenderError as exc:
        raise bad_request(
            f"Prompt '{name}' version {version.number}: {exc}.", param="warden.variables"
        ) from None
    own = payload.get("messages", [])
    if not isinstance(own, list):
        raise bad_request("'messages' must be an array.", param="messages")
    payload["messages"] = [{"role": m.role, "content": m.content} for m in rendered] + own
    if version.model is not None:
        payload.setdefault("model", version.model)
    for param, value in version.params.items():
        payload.setdefault(param, value)
    return PromptUse(name, version.number)
