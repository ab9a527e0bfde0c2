"""Policy files: YAML a compliance team reviews in git, parsed strictly into frozen rules.

Every error names the file, the line and the dotted key, so `warden policy validate` points at
the mistake instead of failing at the first request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policies.yaml_lines import YamlSyntaxError, dotted, load_with_lines

API_VERSION = "warden/v1"
ACTIONS = ("block", "mask", "flag", "log")
MODES = ("enforce", "monitor", "off")
STAGES = ("input", "output")
ON_ERROR = ("block", "allow")
SCOPE_KEYS = ("tenants", "teams", "projects", "keys", "models", "routes")
ROUTES = ("chat.completions", "completions", "embeddings", "responses", "messages", "messages.count_tokens")
DEFAULT_HOLDBACK = 48
TOP_KEYS = (
    "apiVersion",
    "kind",
    "metadata",
    "extends",
    "scope",
    "restore",
    "upstream_context",
    "stream",
    "cache",
    "rules",
    "tests",
)
# What a policy does with a request that points at context the upstream keeps and Warden never saw
# (the Responses API's `previous_response_id` and `conversation`).
UPSTREAM_CONTEXT = ("refuse", "allow")


MAX_CACHE_TTL_S = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """`cache:` in a policy: whether the exact response cache serves its requests, and for how long.
    `ttl_s` 0 takes the server's `cache.ttl_s`; `deterministic_only` caches only requests that ask for
    `temperature: 0` (a sampled answer otherwise repeats for every identical request)."""

    enabled: bool = False
    ttl_s: float = 0.0
    deterministic_only: bool = False


class PolicyError(ValueError):
    """A policy file is invalid; the message says where (file:line: key: problem)."""


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    stage: str
    scanner: str
    action: str
    mode: str = "enforce"
    on_error: str = "block"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PolicyCase:
    """One `tests:` entry: a text, the stage it is checked at, and what must happen."""

    name: str
    stage: str
    text: str
    decision: str
    expect_text: str | None
    kinds: tuple[str, ...]
    line: int


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    version: str
    description: str
    source: str
    scope: dict[str, tuple[str, ...]]
    rules: tuple[Rule, ...]
    tests: tuple[PolicyCase, ...] = ()
    extends: str = ""
    restore: bool = True
    holdback: int = DEFAULT_HOLDBACK
    upstream_context: str = "refuse"
    cache: CachePolicy = field(default_factory=CachePolicy)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def specificity(self) -> int:
        return sum(1 for values in self.scope.values() if values)


def load_policy_file(path: str | Path, scanners: dict[str, Any] | None = None) -> Policy:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{source}: cannot read policy file: {exc.strerror}") from None
    return parse_policy(text, source, scanners)


def parse_policy(text: str, source: str, scanners: dict[str, Any] | None = None) -> Policy:
    """Parse and validate; `scanners` (name -> checker of params) validates rule parameters too."""
    try:
        data, lines = load_with_lines(text, source)
    except YamlSyntaxError as exc:
        raise PolicyError(str(exc)) from None
    return _Reader(source, lines, scanners).policy(data)


class _Reader:
    def __init__(
        self, source: str, lines: dict[tuple[str | int, ...], int], scanners: dict[str, Any] | None
    ) -> None:
        self.source = source
        self.lines = lines
        self.scanners = scanners

    def fail(self, path: tuple[str | int, ...], message: str) -> PolicyError:
        line, probe = None, path
        while line is None:
            line = self.lines.get(probe)
            if not probe:
                break
            probe = probe[:-1]
        where = f"{self.source}:{line}" if line else self.source
        return PolicyError(f"{where}: {dotted(path)}: {message}")

    def mapping(self, value: Any, path: tuple[str | int, ...], allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "must be a mapping")
        for key in value:
            if key not in allowed:
                raise self.fail((*path, key), f"unknown key (known: {', '.join(allowed)})")
        return value

    def string(self, value: Any, path: tuple[str | int, ...], *, empty: bool = False) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(path, "must be a string")
        text = str(value)
        if not text and not empty:
            raise self.fail(path, "must not be empty")
        return text

    def choice(self, value: Any, path: tuple[str | int, ...], options: tuple[str, ...]) -> str:
        if value not in options:
            raise self.fail(path, f"must be one of {', '.join(options)} (got {value!r})")
        return str(value)

    def policy(self, data: Any) -> Policy:
        if data is None:
            raise self.fail((), "the file is empty")
        data = self.mapping(data, (), TOP_KEYS)
        for key in ("apiVersion", "metadata", "rules"):
            if key not in data:
                raise self.fail((), f"missing required key {key!r}")
        if data["apiVersion"] != API_VERSION:
            raise self.fail(("apiVersion",), f"must be {API_VERSION!r}")
        if data.get("kind", "Policy") != "Policy":
            raise self.fail(("kind",), "must be 'Policy'")
        meta = self.mapping(data["metadata"], ("metadata",), ("name", "version", "description"))
        for key in ("name", "version"):
            if key not in meta:
                raise self.fail(("metadata",), f"missing required key {key!r}")
        name = self.string(meta["name"], ("metadata", "name"))
        if not _is_identifier(name):
            raise self.fail(("metadata", "name"), "use letters, digits, '-', '_' and '.' only")
        version = self.string(meta["version"], ("metadata", "version"))
        description = self.string(meta.get("description", ""), ("metadata", "description"), empty=True)
        extends = self.string(data.get("extends", ""), ("extends",), empty=True)
        restore = data.get("restore", True)
        if not isinstance(restore, bool):
            raise self.fail(("restore",), "must be true or false")
        upstream_context = data.get("upstream_context", "refuse")
        if upstream_context not in UPSTREAM_CONTEXT:
            raise self.fail(("upstream_context",), "must be refuse or allow")
        holdback = DEFAULT_HOLDBACK
        if "stream" in data:
            stream = self.mapping(data["stream"], ("stream",), ("holdback",))
            holdback = stream.get("holdback", DEFAULT_HOLDBACK)
            if isinstance(holdback, bool) or not isinstance(holdback, int) or not 32 <= holdback <= 4096:
                raise self.fail(("stream", "holdback"), "must be an integer from 32 to 4096 (characters)")
        return Policy(
            name=name,
            version=version,
            description=description,
            source=self.source,
            scope=self.scope(data.get("scope")),
            rules=self.rules(data["rules"]),
            tests=self.tests(data.get("tests")),
            extends=extends,
            restore=restore,
            holdback=holdback,
            upstream_context=upstream_context,
            cache=self.cache(data.get("cache")),
        )

    def cache(self, raw: Any) -> CachePolicy:
        if raw is None:
            return CachePolicy()
        raw = self.mapping(raw, ("cache",), ("enabled", "ttl_s", "deterministic_only"))
        for key in ("enabled", "deterministic_only"):
            if not isinstance(raw.get(key, False), bool):
                raise self.fail(("cache", key), "must be true or false")
        ttl = raw.get("ttl_s", 0)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 <= ttl <= MAX_CACHE_TTL_S:
            raise self.fail(("cache", "ttl_s"), f"must be a number of seconds from 0 to {MAX_CACHE_TTL_S}")
        return CachePolicy(
            enabled=raw.get("enabled", False),
            ttl_s=float(ttl),
            deterministic_only=raw.get("deterministic_only", False),
        )

    def scope(self, raw: Any) -> dict[str, tuple[str, ...]]:
        if raw is None:
            return {key: () for key in SCOPE_KEYS}
        raw = self.mapping(raw, ("scope",), SCOPE_KEYS)
        scope: dict[str, tuple[str, ...]] = {}
        for key in SCOPE_KEYS:
            values = raw.get(key, [])
            if isinstance(values, str):
                values = [values]
            if not isinstance(values, list):
                raise self.fail(("scope", key), "must be a list of names")
            scope[key] = tuple(self.string(v, ("scope", key, i)) for i, v in enumerate(values))
            if key == "routes":
                for i, route in enumerate(scope[key]):
                    self.choice(route, ("scope", key, i), ROUTES)
        return scope

    def rules(self, raw: Any) -> tuple[Rule, ...]:
        raw = self.mapping(raw, ("rules",), STAGES)
        rules: list[Rule] = []
        ids: set[str] = set()
        for stage in STAGES:
            items = raw.get(stage) or []
            if not isinstance(items, list):
                raise self.fail(("rules", stage), "must be a list of rules")
            for index, item in enumerate(items):
                rule = self.rule(item, ("rules", stage, index), stage)
                if rule.id in ids:
                    raise self.fail(("rules", stage, index, "id"), f"duplicate rule id {rule.id!r}")
                ids.add(rule.id)
                rules.append(rule)
        return tuple(rules)

    def rule(self, raw: Any, path: tuple[str | int, ...], stage: str) -> Rule:
        raw = self.mapping(raw, path, ("id", "scanner", "action", "mode", "on_error", "params"))
        for key in ("scanner", "action"):
            if key not in raw:
                raise self.fail(path, f"missing required key {key!r}")
        scanner = self.string(raw["scanner"], (*path, "scanner"))
        if self.scanners is not None and scanner not in self.scanners:
            raise self.fail(
                (*path, "scanner"), f"unknown scanner (known: {', '.join(sorted(self.scanners))})"
            )
        rule_id = self.string(raw.get("id", f"{stage}.{scanner}"), (*path, "id"))
        if not _is_identifier(rule_id):
            raise self.fail((*path, "id"), "use letters, digits, '-', '_' and '.' only")
        action = self.choice(raw["action"], (*path, "action"), ACTIONS)
        mode = raw.get("mode", "enforce")
        if mode is False:  # YAML 1.1 reads a bare `off` as false
            mode = "off"
        mode = self.choice(mode, (*path, "mode"), MODES)
        on_error = self.choice(raw.get("on_error", "block"), (*path, "on_error"), ON_ERROR)
        params = raw.get("params") or {}
        if not isinstance(params, dict):
            raise self.fail((*path, "params"), "must be a mapping")
        if self.scanners is not None:
            check = self.scanners[scanner]
            try:
                check(params, stage, action)
            except ParamError as error:
                where = (*path, *error.rule_key) if error.rule_key else (*path, "params", *error.path)
                raise self.fail(where, error.message) from None
        return Rule(rule_id, stage, scanner, action, mode, on_error, params)

    def tests(self, raw: Any) -> tuple[PolicyCase, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise self.fail(("tests",), "must be a list of cases")
        cases = []
        for index, item in enumerate(raw):
            path: tuple[str | int, ...] = ("tests", index)
            item = self.mapping(item, path, ("name", "stage", "text", "expect"))
            if "text" not in item or "expect" not in item:
                raise self.fail(path, "a case needs 'text' and 'expect'")
            expect = self.mapping(item["expect"], (*path, "expect"), ("decision", "text", "findings"))
            if "decision" not in expect:
                raise self.fail((*path, "expect"), "missing required key 'decision'")
            kinds = expect.get("findings", [])
            if not isinstance(kinds, list):
                raise self.fail((*path, "expect", "findings"), "must be a list of finding kinds")
            cases.append(
                PolicyCase(
                    name=self.string(item.get("name", f"case {index + 1}"), (*path, "name")),
                    stage=self.choice(item.get("stage", "input"), (*path, "stage"), STAGES),
                    text=self.string(item["text"], (*path, "text"), empty=True),
                    decision=self.choice(
                        expect["decision"], (*path, "expect", "decision"), ("allow", "mask", "flag", "block")
                    ),
                    expect_text=(
                        self.string(expect["text"], (*path, "expect", "text"), empty=True)
                        if "text" in expect
                        else None
                    ),
                    kinds=tuple(str(k) for k in kinds),
                    line=self.lines.get(path, 0),
                )
            )
        return tuple(cases)


class ParamError(ValueError):
    """A scanner's parameter is invalid; `path` is relative to the rule's `params`."""

    def __init__(self, path: tuple[str | int, ...], message: str, rule_key: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.message = message
        self.rule_key = (rule_key,) if rule_key else ()  # the error is about the rule's own key


def merge(parent: Policy, child: Policy) -> Policy:
    """`extends`: the parent's rules, replaced by id where the child redefines them, then the child's new
    rules; scope, metadata and stream settings are the child's own."""
    own = {r.id: r for r in child.rules}
    rules = [own.pop(r.id, r) for r in parent.rules]
    rules.extend(r for r in child.rules if r.id in own)
    return Policy(
        name=child.name,
        version=child.version,
        description=child.description,
        source=child.source,
        scope=child.scope,
        rules=tuple(rules),
        tests=child.tests,
        extends=child.extends,
        restore=child.restore,
        holdback=child.holdback,
        upstream_context=child.upstream_context,
        cache=child.cache,
    )


def _is_identifier(text: str) -> bool:
    return bool(text) and len(text) <= 128 and all(c.isalnum() or c in "-_." for c in text)
