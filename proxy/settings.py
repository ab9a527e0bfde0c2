"""Warden settings: read once from one YAML file plus environment overrides, validated, frozen.

Errors name the file, the line (where the YAML has one) and the dotted key, so a typo in a
config file is found at start, not at the first request.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, unquote, urlparse

import yaml

from policies.toxicity_model import META_NAMES, NAMED_MODELS, classifier_meta
from policies.yaml_lines import YamlSyntaxError, dotted, load_with_lines

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

CONFIG_ENV = "WARDEN_CONFIG"
DEMO_MARKER = ".warden-demo-ready"  # written last by `warden models prepare-demo`
ENV_PREFIX = "WARDEN_"
UPSTREAM_TYPES = ("openai", "onnx", "anthropic", "azure_openai")
# The APIs an upstream may speak natively, by the route names policies and rows use.
UPSTREAM_APIS = ("chat.completions", "completions", "embeddings", "responses", "messages")
ONNX_APIS = ("chat.completions", "completions")  # all a local model can answer
ANTHROPIC_BASE_URL = "https://api.anthropic.com/v1"
# Settings that mean something for one upstream type only: set on another, they are a mistake.
TYPE_ONLY_KEYS = {
    "anthropic_version": "anthropic",
    "api_version": "azure_openai",
    "deployments": "azure_openai",
}
# ClickHouse TTLs are DateTime (until 2106): 50 years is the longest retention that stays in range.
MAX_RETENTION_DAYS = 18250
MAX_TRUSTED_PROXIES = 8  # hops of X-Forwarded-For believed; more is a misconfiguration
SERVER_WORKERS = ("buffered", "gthread")
EMBEDDED_CLICKHOUSE = ("process", "inprocess")
ROUTING_STRATEGIES = ("ordered", "weighted", "least_busy", "latency")

_Section = TypeVar("_Section", bound="DataclassInstance")


class ConfigError(ValueError):
    """A setting is missing, unknown or invalid; the message names where."""


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    name: str
    # openai (an OpenAI-compatible HTTP API) | onnx (a local model folder) | anthropic | azure_openai
    type: str
    base_url: str = ""
    models: tuple[str, ...] = ()
    # The APIs it speaks natively (UPSTREAM_APIS names); empty: its type's default, which the
    # upstream class declares (`default_apis`).
    apis: tuple[str, ...] = ()
    api_key: str | None = field(default=None, repr=False)
    connect_timeout: float = 5.0
    read_timeout: float = 600.0
    retries: int = 1
    max_connections: int = 256
    # Balancing among the deployments of a model (`routing.strategy`): its share under `weighted`, the
    # tie-break under `least_busy`; and a cap on its requests in flight in this process (0: none).
    weight: int = 1
    max_in_flight: int = 0
    # Ask the upstream for a usage chunk on streams even when the client did not, so tokens and
    # cost are always logged; the extra chunk is removed before the client sees it.
    stream_usage: bool = True
    # type: anthropic — sent as the `anthropic-version` header
    anthropic_version: str = "2023-06-01"
    # type: azure_openai — `api-version` of the deployment routes, and model name -> deployment name
    # (a model not listed is its own deployment)
    api_version: str = "2024-10-21"
    deployments: Mapping[str, str] = field(default_factory=dict)
    # type: onnx — a model folder (optimum text-generation-with-past export), run in this process
    path: str = ""
    provider: str = "auto"  # auto | cuda | cpu
    max_batch: int = 8  # requests decoded together (continuous batching)
    threads: int = 0  # onnxruntime intra-op threads; 0: its default
    # default sampling for requests that leave them out
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # Its models run on hardware the operator already pays for: no per-token cost unless `prices`
    # names the model (rows record cost 0, known, instead of "unknown price"). Default: onnx only.
    self_hosted: bool = False


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    # Worker processes: a number, or "auto" (one per CPU core this process may run on).
    workers: int | str = "auto"
    threads: int = 64
    max_body_bytes: int = 10 * 1024 * 1024
    # How many proxies in front set X-Forwarded-For/-Proto; 0 believes none (anyone could send them).
    trusted_proxies: int = 0
    # "buffered": proxy/worker.py reads each request before a thread takes it, so slow clients hold no
    # thread; "gthread": gunicorn's own worker, kept to measure against (bench/slow_clients.py).
    worker: str = "buffered"
    header_timeout_s: float = 10.0
    # A client silent this long mid-request (a body, a stream it does not read) is dropped.
    client_timeout_s: float = 60.0
    max_connections: int = 4096


@dataclass(frozen=True, slots=True)
class StorageSettings:
    database_url: str = "sqlite:///var/warden.db"
    clickhouse_url: str = "chdb:///var/clickhouse"
    # The password of an http(s) ClickHouse, kept out of the URL: the password itself, env:VAR or
    # file:PATH (e.g. the file `warden clickhouse-serve` writes).
    clickhouse_password: str | None = None
    # A Redis server (redis://, rediss:// or unix://) every worker and replica shares: limits and
    # budgets, and the response cache's `backend: redis`. Empty: limits and budgets are kept in this
    # process (exact for one worker only), the cache in memory.
    redis_url: str = ""
    # With a chdb:// clickhouse_url, how `warden serve` reaches it: "process" starts a local ClickHouse
    # process on loopback that every worker shares; "inprocess" opens chDB inside the one worker
    # (chDB allows one process per data directory). `create_app` on its own always opens it in process.
    embedded_clickhouse: str = "process"


@dataclass(frozen=True, slots=True)
class AuthSettings:
    # Positive key lookups are cached this long; a revocation reaches other processes within it.
    key_cache_seconds: float = 1.0
    session_idle_minutes: float = 30.0
    session_absolute_hours: float = 12.0
    login_max_failures: int = 5
    login_lockout_minutes: float = 15.0
    # Sign-in attempts one address may make per minute, counted before any password hash or audit write.
    login_attempts_per_minute: int = 20
    cookie_secure: str = "auto"  # auto: Secure when the request came over HTTPS
    # For automation: a bearer token that acts as a tenant-wide admin of the default tenant.
    admin_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class AnalyticsSettings:
    queue_size: int = 100_000
    batch_size: int = 1_000
    flush_interval_seconds: float = 1.0
    # Every event is appended here before the response completes; segments are deleted once their
    # events are in ClickHouse, and replayed after an outage or a crash.
    spool_dir: str = "var/spool"
    fsync_interval_ms: float = 50.0
    segment_events: int = 5_000


@dataclass(frozen=True, slots=True)
class CryptoSettings:
    # "auto": a key file under var/ created on first use; or env:VARIABLE / file:PATH (32 bytes, base64).
    kek: str = field(default="auto", repr=False)


@dataclass(frozen=True, slots=True)
class TranscriptSettings:
    store: str = "full"  # full | none
    retention_days: int = 30
    # Data keys per end user (the request's `user`): at most this many new ones per API key and hour;
    # past it, transcripts of new users are sealed under the tenant key (their rows stay erasable).
    new_subject_keys_per_hour: int = 1000


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    days: int = 365  # metrics rows; 0 keeps them forever
    teams: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ComplianceSettings:
    # Refuse (503) a request whose event cannot be made durable instead of serving it unrecorded.
    fail_closed: bool = False


@dataclass(frozen=True, slots=True)
class ExportSettings:
    dir: str = "var/exports"
    signing_key: str = "var/export-signing.key"
    # Exports served by the admin API are deleted this many days after they were made: a decrypted
    # transcript must not outlive its purpose.
    keep_days: int = 7


@dataclass(frozen=True, slots=True)
class DemoSettings:
    # With no `upstreams` configured, a model folder prepared by `warden models prepare-demo` here is
    # served as the models `local` and `smollm2-135m-instruct` (what `make run` sets up).
    model_dir: str = "var/models/smollm2"
    models: tuple[str, ...] = ("smollm2-135m-instruct",)
    provider: str = "cpu"  # auto | cuda | cpu
    # A 135M model sampled at temperature 1 rambles in several languages; near-greedy, it answers
    # "What is the capital of France?" with "The capital of France is Paris."
    temperature: float = 0.2
    max_tokens: int = 128


@dataclass(frozen=True, slots=True)
class PolicySettings:
    # Policy files or folders of them (*.yaml); none: the built-in policies/default.yaml.
    files: tuple[str, ...] = ()
    reload_interval_s: float = 1.0  # how often files are checked for changes; 0 checks every request
    # Texts without any hit remembered per compiled policy (as keyed digests, per tenant) and not scanned
    # again: the repeated system prompt and history of a chat. 0 scans every text every time.
    clean_text_memo: int = 32_768
    pii_spacy_model: str = ""  # a spaCy model folder (NER for names); empty: pattern recognizers
    # `builtin` (a small linear model, offline), `none`, a Detoxify checkpoint, or a folder made by
    # `warden models export-toxicity`
    toxicity_model: str = "builtin"
    toxicity_config: str = ""  # the checkpoint's base model folder (config.json + tokenizer files)
    device: str = "cpu"  # cpu | cuda, for the toxicity and injection models
    # an ONNX classifier folder made by `warden models export-classifier`; empty: patterns only
    injection_model: str = ""


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    """How a model's deployments share its requests and fail over (see proxy/gateway/router.py). The
    breaker, the latency averages and the in-flight counts live in each process: per replica."""

    strategy: str = "ordered"  # ordered | weighted | least_busy | latency
    models: Mapping[str, str] = field(default_factory=dict)  # model -> strategy, for some models
    deadline_s: float = 0.0  # all attempts of one request start within this; 0: no overall limit
    backoff_s: float = 0.1  # first retry of a connection failure waits up to this (jittered, doubling)
    backoff_max_s: float = 2.0
    retry_after_max_s: float = 60.0  # a 429's retry-after cools its upstream at most this long
    breaker_failures: int = 5  # consecutive failures that open the circuit; 0: never on this count
    breaker_failure_rate: float = 0.5  # failed share of the last breaker_window calls; 0: off
    breaker_window: int = 20
    breaker_min_calls: int = 10  # calls in the window before the rate counts
    breaker_cooldown_s: float = 30.0  # open this long, then one probe; doubled after a failed probe
    breaker_max_cooldown_s: float = 300.0
    latency_alpha: float = 0.3  # weight of the newest sample in the moving average
    latency_explore: float = 0.05  # share of requests sent to a random deployment (latency strategy)


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """The exact response cache (off unless a policy enables it): where entries live and their limits."""

    backend: str = "memory"  # memory (per process) | redis (storage.redis_url, shared)
    ttl_s: float = 300.0  # a policy's `cache.ttl_s` overrides it
    max_entries: int = 10_000  # memory backend: the least recently used go first
    max_body_bytes: int = 1_000_000  # larger answers (a JSON body, a whole stream) are not cached
    key_prefix: str = "warden:cache:"  # redis backend: every key starts with it


# Prompt label names: safe in URLs, file names and audit targets.
PROMPT_LABEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class PromptSettings:
    # Labels a version gets only after a person other than its author approved it.
    require_approval: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens; micro-USD per token is then the same number."""

    input: float
    output: float
    cached_input: float | None = None


LIMIT_SCOPES = ("key", "team", "project", "tenant")
BUDGET_PERIODS = ("day", "month", "total")


@dataclass(frozen=True, slots=True)
class LimitRule:
    """Requests and tokens per minute and requests at once, for each key (team, project, tenant) the
    rule matches; `model` "*" counts every model together, a name only that model's requests."""

    scope: str  # key | team | project | tenant
    tenant: str = "*"
    match: str = "*"  # the key id, team, project or tenant it applies to; "*": each one separately
    model: str = "*"
    rpm: int = 0
    tpm: int = 0
    concurrent: int = 0


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """USD per period for each key (team, project, tenant) the rule matches. Over `hard_usd` requests
    are refused (their worst case is reserved first); over `soft_usd` they pass and are flagged."""

    scope: str
    period: str  # day | month | total (UTC)
    tenant: str = "*"
    match: str = "*"
    hard_usd: float = 0.0  # 0: none
    soft_usd: float = 0.0  # 0: none


@dataclass(frozen=True, slots=True)
class TrafficSettings:
    # When Redis cannot be reached: let requests through unlimited (allow) or refuse them (refuse).
    redis_down_limits: str = "allow"
    redis_down_budgets: str = "refuse"
    # A model with no price under a hard budget: refuse, or allow (its cost counts as 0).
    unpriced: str = "refuse"
    # max_tokens assumed for the worst case of a request that sets none
    default_max_tokens: int = 4096
    # How long a request may hold a concurrency slot or a reservation if its replica dies with it.
    lease_s: float = 900.0
    key_prefix: str = "warden:"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    analytics: AnalyticsSettings = field(default_factory=AnalyticsSettings)
    upstreams: tuple[UpstreamSettings, ...] = ()
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    prices: Mapping[str, Price] = field(default_factory=dict)
    crypto: CryptoSettings = field(default_factory=CryptoSettings)
    transcripts: TranscriptSettings = field(default_factory=TranscriptSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    compliance: ComplianceSettings = field(default_factory=ComplianceSettings)
    exports: ExportSettings = field(default_factory=ExportSettings)
    policies: PolicySettings = field(default_factory=PolicySettings)
    limits: tuple[LimitRule, ...] = ()
    budgets: tuple[BudgetRule, ...] = ()
    traffic: TrafficSettings = field(default_factory=TrafficSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    prompts: PromptSettings = field(default_factory=PromptSettings)
    source: str = "<defaults>"

    def retention_days(self, team: str) -> int:
        return self.retention.teams.get(team, self.retention.days)


# -- loading -----------------------------------------------------------------------------------


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    resolve_secrets: bool = True,
) -> Settings:
    """Load settings from `path` (or $WARDEN_CONFIG, or embedded defaults) plus WARDEN_* overrides.

    `resolve_secrets=False` leaves `env:`/`file:` references unresolved, for commands such as
    `warden keys` that never call an upstream and should not need its credentials.
    """
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_ENV) or None
    raw: dict[str, Any] = {}
    lines: dict[tuple[str | int, ...], int] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read config file: {exc.strerror}") from None
        raw, lines = _parse_yaml(text, source)
    _apply_env_overrides(raw, environ)
    return _Builder(source, lines, environ, resolve_secrets).build(raw)


def _parse_yaml(text: str, source: str) -> tuple[dict[str, Any], dict[tuple[str | int, ...], int]]:
    try:
        data, lines = load_with_lines(text, source)
    except YamlSyntaxError as exc:
        raise ConfigError(str(exc)) from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: the top level must be a mapping of sections")
    return data, lines


def _apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    """WARDEN_SECTION__KEY=value overrides `section.key`; values are parsed as YAML scalars."""
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"environment {name}: expected WARDEN_SECTION__KEY")
        section, key = parts
        if section not in _SECTIONS:
            raise ConfigError(f"environment {name}: unknown section {section!r}")
        target = raw.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"environment {name}: section {section!r} is not a mapping")
        try:
            target[key] = yaml.safe_load(value) if value else value
        except yaml.YAMLError:
            target[key] = value


class _Builder:
    def __init__(
        self,
        source: str,
        lines: dict[tuple[str | int, ...], int],
        environ: Mapping[str, str],
        resolve_secrets: bool,
    ) -> None:
        self.source = source
        self.lines = lines
        self.environ = environ
        self.resolve_secrets = resolve_secrets

    def fail(self, path: tuple[str | int, ...], message: str) -> ConfigError:
        line = None
        probe = path
        while line is None and probe:
            line = self.lines.get(probe)
            probe = probe[:-1]
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{where}: {dotted(path)}: {message}")

    def build(self, raw: dict[str, Any]) -> Settings:
        unknown = sorted(set(raw) - set(_SECTIONS))
        if unknown:
            raise self.fail((unknown[0],), f"unknown section (known: {', '.join(sorted(_SECTIONS))})")
        server = self.dataclass_section(raw, "server", ServerSettings)
        storage = self.dataclass_section(raw, "storage", StorageSettings)
        auth = self.dataclass_section(raw, "auth", AuthSettings)
        analytics = self.dataclass_section(raw, "analytics", AnalyticsSettings)
        self.check_server(server)
        storage = self.check_storage(storage)
        self.check_positive(("analytics", "queue_size"), analytics.queue_size)
        self.check_positive(("analytics", "batch_size"), analytics.batch_size)
        self.check_positive(("analytics", "flush_interval_seconds"), analytics.flush_interval_seconds)
        auth = self.check_auth(auth)
        for key in ("fsync_interval_ms", "segment_events"):
            self.check_positive(("analytics", key), getattr(analytics, key))
        analytics = replace(analytics, spool_dir=str(Path(analytics.spool_dir).resolve()))
        upstreams = self.upstreams(raw.get("upstreams"))
        demo = self.dataclass_section(raw, "demo", DemoSettings)
        if demo.provider not in ("auto", "cuda", "cpu"):
            raise self.fail(("demo", "provider"), "must be auto, cuda or cpu")
        if not 0 <= demo.temperature <= 2:
            raise self.fail(("demo", "temperature"), "must be between 0 and 2")
        if not 1 <= demo.max_tokens <= 4096:
            raise self.fail(("demo", "max_tokens"), "must be between 1 and 4096")
        if "upstreams" not in raw:
            upstreams = self.demo_upstreams(raw)
        routing = self.routing(raw, upstreams)
        prices = self.prices(raw.get("prices"))
        crypto = self.dataclass_section(raw, "crypto", CryptoSettings)
        if crypto.kek == "auto":
            crypto = CryptoSettings(kek="auto:" + str(Path("var/warden-kek.key").resolve()))
        elif crypto.kek.startswith(("file:", "auto:")):
            scheme, _, path = crypto.kek.partition(":")
            crypto = CryptoSettings(kek=f"{scheme}:{Path(path).resolve()}")
        elif not crypto.kek.startswith("env:"):
            raise self.fail(("crypto", "kek"), "must be auto, auto:PATH, env:VARIABLE or file:PATH")
        transcripts = self.dataclass_section(raw, "transcripts", TranscriptSettings)
        if transcripts.store not in ("full", "none"):
            raise self.fail(("transcripts", "store"), "must be full or none")
        if not 0 <= transcripts.retention_days <= MAX_RETENTION_DAYS:
            raise self.fail(("transcripts", "retention_days"), f"must be between 0 and {MAX_RETENTION_DAYS}")
        if not 0 <= transcripts.new_subject_keys_per_hour <= 1_000_000:
            raise self.fail(("transcripts", "new_subject_keys_per_hour"), "must be between 0 and 1000000")
        retention = self.retention(raw.get("retention"))
        compliance = self.dataclass_section(raw, "compliance", ComplianceSettings)
        exports = self.dataclass_section(raw, "exports", ExportSettings)
        if not 1 <= exports.keep_days <= 3650:
            raise self.fail(("exports", "keep_days"), "must be between 1 and 3650")
        exports = ExportSettings(
            dir=str(Path(exports.dir).resolve()),
            signing_key=str(Path(exports.signing_key).resolve()),
            keep_days=exports.keep_days,
        )
        policies = self.policies(raw)
        limits, budgets, traffic = self.traffic(raw)
        cache = self.cache(raw, storage)
        prompts = self.prompts(raw)
        return Settings(
            server=server,
            storage=storage,
            auth=auth,
            analytics=analytics,
            upstreams=upstreams,
            routing=routing,
            prices=prices,
            crypto=crypto,
            transcripts=transcripts,
            retention=retention,
            compliance=compliance,
            exports=exports,
            policies=policies,
            limits=limits,
            budgets=budgets,
            traffic=traffic,
            cache=cache,
            prompts=prompts,
            source=self.source,
        )

    def traffic(
        self, raw: dict[str, Any]
    ) -> tuple[tuple[LimitRule, ...], tuple[BudgetRule, ...], TrafficSettings]:
        limits = []
        for index, item in enumerate(self.rule_list(raw, "limits")):
            path: tuple[str | int, ...] = ("limits", index)
            rule = self.fill(LimitRule, item, path)
            self.check_scope(rule.scope, path)
            for key in ("rpm", "tpm", "concurrent"):
                if getattr(rule, key) < 0:
                    raise self.fail((*path, key), "must be >= 0 (0: no limit)")
            if not (rule.rpm or rule.tpm or rule.concurrent):
                raise self.fail(path, "sets no limit: give rpm, tpm or concurrent")
            limits.append(rule)
        budgets = []
        for index, item in enumerate(self.rule_list(raw, "budgets")):
            path = ("budgets", index)
            budget = self.fill(BudgetRule, item, path)
            self.check_scope(budget.scope, path)
            if budget.period not in BUDGET_PERIODS:
                raise self.fail((*path, "period"), f"must be one of {', '.join(BUDGET_PERIODS)}")
            for key in ("hard_usd", "soft_usd"):
                if getattr(budget, key) < 0:
                    raise self.fail((*path, key), "must be >= 0 (0: none)")
            if not (budget.hard_usd or budget.soft_usd):
                raise self.fail(path, "sets no threshold: give hard_usd, soft_usd or both")
            if budget.hard_usd and budget.soft_usd > budget.hard_usd:
                raise self.fail((*path, "soft_usd"), "must not be above hard_usd")
            budgets.append(budget)
        traffic = self.dataclass_section(raw, "traffic", TrafficSettings)
        for key in ("redis_down_limits", "redis_down_budgets", "unpriced"):
            if getattr(traffic, key) not in ("allow", "refuse"):
                raise self.fail(("traffic", key), "must be allow or refuse")
        self.check_positive(("traffic", "default_max_tokens"), traffic.default_max_tokens)
        self.check_positive(("traffic", "lease_s"), traffic.lease_s)
        return tuple(limits), tuple(budgets), traffic

    def rule_list(self, raw: dict[str, Any], name: str) -> list[dict[str, Any]]:
        items = raw.get(name) or []
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise self.fail((name,), "must be a list of mappings")
        return items

    def check_scope(self, scope: str, path: tuple[str | int, ...]) -> None:
        if scope not in LIMIT_SCOPES:
            raise self.fail((*path, "scope"), f"must be one of {', '.join(LIMIT_SCOPES)}")

    def routing(self, raw: dict[str, Any], upstreams: tuple[UpstreamSettings, ...]) -> RoutingSettings:
        routing = self.dataclass_section(raw, "routing", RoutingSettings)
        known = ", ".join(ROUTING_STRATEGIES)
        if routing.strategy not in ROUTING_STRATEGIES:
            raise self.fail(
                ("routing", "strategy"), f"unknown strategy {routing.strategy!r} (known: {known})"
            )
        served = {model for up in upstreams for model in up.models}
        for model, strategy in routing.models.items():
            if strategy not in ROUTING_STRATEGIES:
                raise self.fail(
                    ("routing", "models", model), f"unknown strategy {strategy!r} (known: {known})"
                )
            if model not in served:
                raise self.fail(("routing", "models", model), f"no upstream serves the model {model!r}")
        for key in ("deadline_s", "breaker_failures", "breaker_failure_rate", "latency_explore"):
            if getattr(routing, key) < 0:
                raise self.fail(("routing", key), "must be >= 0")
        for key in (
            "backoff_s",
            "backoff_max_s",
            "retry_after_max_s",
            "breaker_window",
            "breaker_min_calls",
            "breaker_cooldown_s",
        ):
            self.check_positive(("routing", key), getattr(routing, key))
        if routing.breaker_failure_rate > 1:
            raise self.fail(("routing", "breaker_failure_rate"), "must be between 0 and 1")
        if routing.latency_explore > 1:
            raise self.fail(("routing", "latency_explore"), "must be between 0 and 1")
        if not 0 < routing.latency_alpha <= 1:
            raise self.fail(("routing", "latency_alpha"), "must be in (0, 1]")
        if routing.breaker_min_calls > routing.breaker_window:
            raise self.fail(("routing", "breaker_min_calls"), "must be <= breaker_window")
        if routing.breaker_max_cooldown_s < routing.breaker_cooldown_s:
            raise self.fail(("routing", "breaker_max_cooldown_s"), "must be >= breaker_cooldown_s")
        return routing

    def prompts(self, raw: dict[str, Any]) -> PromptSettings:
        prompts = self.dataclass_section(raw, "prompts", PromptSettings)
        for index, label in enumerate(prompts.require_approval):
            if not PROMPT_LABEL.match(label):
                raise self.fail(
                    ("prompts", "require_approval", index),
                    f"{label!r} is not a label name (lower-case letters, digits, '.', '_' or '-', "
                    "at most 64, starting with a letter or digit)",
                )
        return prompts

    def cache(self, raw: dict[str, Any], storage: StorageSettings) -> CacheSettings:
        cache = self.dataclass_section(raw, "cache", CacheSettings)
        if cache.backend not in ("memory", "redis"):
            raise self.fail(("cache", "backend"), "must be memory or redis")
        if cache.backend == "redis" and not storage.redis_url:
            raise self.fail(("cache", "backend"), "redis needs storage.redis_url")
        for key in ("ttl_s", "max_entries", "max_body_bytes"):
            self.check_positive(("cache", key), getattr(cache, key))
        if not cache.key_prefix:
            raise self.fail(("cache", "key_prefix"), "must not be empty")
        return cache

    def policies(self, raw: dict[str, Any]) -> PolicySettings:
        policies = self.dataclass_section(raw, "policies", PolicySettings)
        if policies.device not in ("cpu", "cuda"):
            raise self.fail(("policies", "device"), "must be cpu or cuda")
        if policies.reload_interval_s < 0:
            raise self.fail(("policies", "reload_interval_s"), "must be >= 0")
        if policies.clean_text_memo < 0 or policies.clean_text_memo > 10_000_000:
            raise self.fail(("policies", "clean_text_memo"), "must be between 0 and 10000000")
        resolved = {}
        for key in ("pii_spacy_model", "toxicity_model", "toxicity_config", "injection_model"):
            value = getattr(policies, key)
            if key == "toxicity_model" and value in NAMED_MODELS:
                resolved[key] = value
                continue
            if value and not Path(value).exists():
                raise self.fail(
                    ("policies", key),
                    f"no such file or folder: {value}"
                    + (" (or one of: builtin, none)" if key == "toxicity_model" else ""),
                )
            if key == "injection_model" and value and classifier_meta(value) is None:
                raise self.fail(
                    ("policies", key),
                    f"not a classifier folder (no {' or '.join(META_NAMES)}): {value}; "
                    "make one with `warden models export-classifier`",
                )
            resolved[key] = str(Path(value).resolve()) if value else ""
        for index, name in enumerate(policies.files):
            if not Path(name).exists():
                raise self.fail(("policies", "files", index), f"no such file or folder: {name}")
        files = tuple(str(Path(name).resolve()) for name in policies.files)
        return replace(
            policies,
            files=files,
            pii_spacy_model=resolved["pii_spacy_model"],
            toxicity_model=resolved["toxicity_model"],
            toxicity_config=resolved["toxicity_config"],
            injection_model=resolved["injection_model"],
        )

    def retention(self, raw: Any) -> RetentionSettings:
        if raw is None:
            return RetentionSettings()
        if not isinstance(raw, dict):
            raise self.fail(("retention",), "must be a mapping")
        unknown = sorted(set(raw) - {"days", "teams"})
        if unknown:
            raise self.fail(("retention", unknown[0]), "unknown key (known: days, teams)")
        days = self.coerce("int", raw.get("days", 365), ("retention", "days"))
        teams = raw.get("teams") or {}
        if not isinstance(teams, dict):
            raise self.fail(("retention", "teams"), "must map team names to days")
        checked = {
            str(team): self.coerce("int", value, ("retention", "teams", team))
            for team, value in teams.items()
        }
        for path, value in [(("retention", "days"), days)] + [
            (("retention", "teams", t), v) for t, v in checked.items()
        ]:
            if not 0 <= value <= MAX_RETENTION_DAYS:
                raise self.fail(path, f"must be between 0 and {MAX_RETENTION_DAYS} (0 keeps rows)")
        return RetentionSettings(days, checked)

    def dataclass_section(self, raw: dict[str, Any], name: str, cls: type[_Section]) -> _Section:
        values = raw.get(name)
        if values is None:
            return cls()
        if not isinstance(values, dict):
            raise self.fail((name,), "must be a mapping")
        return self.fill(cls, values, (name,))

    def fill(
        self, cls: type[_Section], values: dict[str, Any], path: tuple[str | int, ...], **fixed: Any
    ) -> _Section:
        fields = {f.name: f for f in cls.__dataclass_fields__.values()}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise self.fail((*path, unknown[0]), f"unknown key (known: {', '.join(sorted(fields))})")
        kwargs: dict[str, Any] = dict(fixed)
        for name, value in values.items():
            if name in fixed:
                continue
            # Field types are strings here (this module postpones annotations); str() only narrows the type.
            kwargs[name] = self.coerce(str(fields[name].type), value, (*path, name))
        try:
            return cls(**kwargs)
        except TypeError as exc:
            missing = [n for n, f in fields.items() if n not in kwargs and _required(f)]
            if missing:
                raise self.fail((*path, missing[0]), "is required") from None
            raise self.fail(path, str(exc)) from None

    def coerce(self, annotation: str, value: Any, path: tuple[str | int, ...]) -> Any:
        kind = annotation.replace(" ", "")
        if kind == "int|str":  # a count or a keyword (server.workers: auto), checked by the section
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise self.fail(path, f"must be a number or a keyword, got {value!r}")
            return value
        if kind in ("int",):
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.fail(path, f"must be an integer, got {value!r}")
            return value
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.fail(path, f"must be a number, got {value!r}")
            return float(value)
        if kind == "float|None":
            return None if value is None else self.coerce("float", value, path)
        if kind == "int|None":
            return None if value is None else self.coerce("int", value, path)
        if kind == "bool":
            if not isinstance(value, bool):
                raise self.fail(path, f"must be true or false, got {value!r}")
            return value
        if kind in ("str", "str|None"):
            if value is None and kind == "str|None":
                return None
            if isinstance(value, date):
                # YAML reads an unquoted `api_version: 2024-10-21` as a date; the text is what was meant.
                value = value.isoformat()
            if not isinstance(value, str) or not value.strip():
                raise self.fail(path, f"must be a non-empty string, got {value!r}")
            return value
        if kind == "tuple[str,...]":
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise self.fail(path, "must be a list of non-empty strings")
            return tuple(value)
        if kind == "Mapping[str,str]":
            if not isinstance(value, dict):
                raise self.fail(path, "must be a mapping of names to names")
            for key, item in value.items():
                if not isinstance(key, str) or not key or not isinstance(item, str) or not item.strip():
                    raise self.fail((*path, str(key)), f"must map a name to a non-empty string, got {item!r}")
            return dict(value)
        raise self.fail(path, f"unsupported setting type {annotation}")  # pragma: no cover

    def check_positive(self, path: tuple[str | int, ...], value: float) -> None:
        if value <= 0:
            raise self.fail(path, "must be > 0")

    def check_auth(self, auth: AuthSettings) -> AuthSettings:
        if auth.key_cache_seconds < 0:
            raise self.fail(("auth", "key_cache_seconds"), "must be >= 0")
        for key in (
            "session_idle_minutes",
            "session_absolute_hours",
            "login_max_failures",
            "login_lockout_minutes",
            "login_attempts_per_minute",
        ):
            self.check_positive(("auth", key), getattr(auth, key))
        if auth.cookie_secure not in ("auto", "always", "never"):
            raise self.fail(("auth", "cookie_secure"), "must be auto, always or never")
        token = self.secret(auth.admin_token, ("auth", "admin_token"))
        if token is not None and self.resolve_secrets and len(token) < 24:
            raise self.fail(("auth", "admin_token"), "must be at least 24 characters")
        return replace(auth, admin_token=token)

    def check_server(self, server: ServerSettings) -> None:
        if not 0 <= server.port <= 65535:
            raise self.fail(("server", "port"), "must be between 0 and 65535")
        if isinstance(server.workers, str) and server.workers != "auto":
            raise self.fail(("server", "workers"), f"must be a number or auto, got {server.workers!r}")
        for key in ("threads", "max_body_bytes", "header_timeout_s", "client_timeout_s"):
            self.check_positive(("server", key), getattr(server, key))
        if isinstance(server.workers, int):
            self.check_positive(("server", "workers"), server.workers)
        self.check_positive(("server", "max_connections"), server.max_connections)
        if server.worker not in SERVER_WORKERS:
            raise self.fail(("server", "worker"), f"must be one of {', '.join(SERVER_WORKERS)}")
        if not 0 <= server.trusted_proxies <= MAX_TRUSTED_PROXIES:
            raise self.fail(("server", "trusted_proxies"), f"must be between 0 and {MAX_TRUSTED_PROXIES}")

    def check_storage(self, storage: StorageSettings) -> StorageSettings:
        db = storage.database_url
        if not db.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
            raise self.fail(("storage", "database_url"), "must be a sqlite:/// or postgresql:// URL")
        if db.startswith("postgres://"):
            db = "postgresql://" + db[len("postgres://") :]
        if db.startswith("postgresql://"):
            # psycopg 3 is the driver we ship; SQLAlchemy would otherwise look for psycopg2.
            db = "postgresql+psycopg://" + db[len("postgresql://") :]
        if db.startswith("sqlite:///") and db != "sqlite:///:memory:":
            db = "sqlite:///" + _local_path(db[len("sqlite://") :], ("storage", "database_url"), self)
        ch = storage.clickhouse_url
        scheme = urlparse(ch).scheme
        if scheme not in ("chdb", "http", "https"):
            raise self.fail(("storage", "clickhouse_url"), "must be chdb:///PATH or http(s)://HOST:PORT/DB")
        if scheme == "chdb":
            ch = "chdb://" + _local_path(ch[len("chdb://") :], ("storage", "clickhouse_url"), self)
        if storage.clickhouse_password is not None:
            ch = self.with_clickhouse_password(ch, storage.clickhouse_password)
        if storage.redis_url and urlparse(storage.redis_url).scheme not in ("redis", "rediss", "unix"):
            raise self.fail(("storage", "redis_url"), "must be a redis://, rediss:// or unix:// URL")
        if storage.embedded_clickhouse not in EMBEDDED_CLICKHOUSE:
            raise self.fail(
                ("storage", "embedded_clickhouse"),
                f"must be process (a local ClickHouse process every worker shares) or inprocess "
                f"(chDB inside the one worker), got {storage.embedded_clickhouse!r}",
            )
        return replace(storage, database_url=db, clickhouse_url=ch)

    def with_clickhouse_password(self, url: str, reference: str) -> str:
        """`url` with the password in it, which is how clickhouse-connect takes it. Resolved even when
        secrets are not: every command that reaches storage needs it, unlike upstream keys."""
        path = ("storage", "clickhouse_password")
        parsed = urlparse(url)
        if parsed.scheme == "chdb":
            raise self.fail(path, "is for an http(s) clickhouse_url; in-process chDB has none")
        if parsed.password is not None:
            raise self.fail(path, "give the password here or in clickhouse_url, not both")
        password = self.secret(reference, path, always=True)
        assert password is not None
        return clickhouse_url_with_password(url, password)

    def upstreams(self, raw: Any) -> tuple[UpstreamSettings, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise self.fail(("upstreams",), "must be a list")
        result: list[UpstreamSettings] = []
        names: set[str] = set()
        for index, item in enumerate(raw):
            path: tuple[str | int, ...] = ("upstreams", index)
            if not isinstance(item, dict):
                raise self.fail(path, "must be a mapping")
            api_key = self.secret(item.get("api_key"), (*path, "api_key"))
            up = self.fill(UpstreamSettings, item, path, api_key=api_key)
            if up.type not in UPSTREAM_TYPES:
                known = ", ".join(UPSTREAM_TYPES)
                raise self.fail((*path, "type"), f"unknown upstream type {up.type!r} (known: {known})")
            if up.name in names:
                raise self.fail((*path, "name"), f"duplicate upstream name {up.name!r}")
            names.add(up.name)
            for key, only in TYPE_ONLY_KEYS.items():
                if key in item and up.type != only:
                    raise self.fail((*path, key), f"applies to type {only} only, not {up.type}")
            self.check_apis(up, "apis" in item, path)
            if "self_hosted" not in item:
                up = replace(up, self_hosted=up.type == "onnx")
            up = self.local_model(up, path) if up.type == "onnx" else self.http_upstream(up, path)
            if not up.models:
                raise self.fail((*path, "models"), "is required (at least one model name)")
            for key in ("connect_timeout", "read_timeout", "max_connections"):
                self.check_positive((*path, key), getattr(up, key))
            if up.retries < 0:
                raise self.fail((*path, "retries"), "must be >= 0")
            if not 1 <= up.weight <= 1000:
                raise self.fail((*path, "weight"), "must be from 1 to 1000")
            if up.max_in_flight < 0:
                raise self.fail((*path, "max_in_flight"), "must be >= 0 (0: no cap)")
            result.append(up)
        return tuple(result)

    def check_apis(self, up: UpstreamSettings, given: bool, path: tuple[str | int, ...]) -> None:
        if given and not up.apis:
            raise self.fail((*path, "apis"), "must name at least one API (or be left out for the default)")
        for index, api in enumerate(up.apis):
            if api not in UPSTREAM_APIS:
                known = ", ".join(UPSTREAM_APIS)
                raise self.fail((*path, "apis", index), f"unknown API {api!r} (known: {known})")
            if up.type == "onnx" and api not in ONNX_APIS:
                served = ", ".join(ONNX_APIS)
                raise self.fail((*path, "apis", index), f"a local model cannot serve {api!r} (only {served})")

    def http_upstream(self, up: UpstreamSettings, path: tuple[str | int, ...]) -> UpstreamSettings:
        if up.type == "anthropic" and not up.base_url:
            up = replace(up, base_url=ANTHROPIC_BASE_URL)
        parsed = urlparse(up.base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise self.fail((*path, "base_url"), "must be an http(s):// URL")
        if up.type == "anthropic" and not _DATE.fullmatch(up.anthropic_version):
            raise self.fail(
                (*path, "anthropic_version"), f"must be a date like 2023-06-01, got {up.anthropic_version!r}"
            )
        if up.type == "azure_openai":
            # Warden adds /openai/deployments/... or /openai/v1/... itself, per route.
            if "/openai" in parsed.path:
                raise self.fail(
                    (*path, "base_url"), "must be the resource root, https://<resource>.openai.azure.com"
                )
            if not _AZURE_API_VERSION.fullmatch(up.api_version):
                raise self.fail(
                    (*path, "api_version"),
                    f"must look like 2024-10-21 or 2025-04-01-preview, got {up.api_version!r}",
                )
            for model in up.deployments:
                if up.models and model not in up.models:  # no models at all: that error comes next
                    raise self.fail(
                        (*path, "deployments", model), f"{model!r} is not in this upstream's models"
                    )
        return up

    def local_model(self, up: UpstreamSettings, path: tuple[str | int, ...]) -> UpstreamSettings:
        if not up.path:
            raise self.fail(path, "an onnx upstream needs 'path' (a model folder)")
        folder = Path(up.path)
        if not (folder / "model.onnx").is_file():
            raise self.fail((*path, "path"), f"no model.onnx in {up.path} (see `warden models`)")
        if up.provider not in ("auto", "cuda", "cpu"):
            raise self.fail((*path, "provider"), "must be auto, cuda or cpu")
        if not 1 <= up.max_batch <= 256:
            raise self.fail((*path, "max_batch"), "must be from 1 to 256")
        if up.threads < 0:
            raise self.fail((*path, "threads"), "must be >= 0")
        if up.temperature is not None and not 0 <= up.temperature <= 2:
            raise self.fail((*path, "temperature"), "must be from 0 to 2")
        if up.top_p is not None and not 0 < up.top_p <= 1:
            raise self.fail((*path, "top_p"), "must be in (0, 1]")
        if up.max_tokens is not None and up.max_tokens < 1:
            raise self.fail((*path, "max_tokens"), "must be >= 1")
        if len(up.stop) > 4:
            raise self.fail((*path, "stop"), "at most 4 stop strings")
        return replace(up, path=str(folder.resolve()))

    def demo_upstreams(self, raw: dict[str, Any]) -> tuple[UpstreamSettings, ...]:
        """No upstream configured: the demo model, when `warden models prepare-demo` has made it."""
        demo = self.dataclass_section(raw, "demo", DemoSettings)
        folder = Path(demo.model_dir)
        if not demo.model_dir or not (folder / DEMO_MARKER).is_file():
            return ()
        return (
            UpstreamSettings(
                name="local",
                type="onnx",
                self_hosted=True,
                models=("local", *demo.models),
                path=str(folder.resolve()),
                provider=demo.provider,
                retries=0,
                temperature=demo.temperature,
                max_tokens=demo.max_tokens,
            ),
        )

    def secret(self, value: Any, path: tuple[str | int, ...], *, always: bool = False) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(path, "must be a string: the key itself, env:VARIABLE or file:PATH")
        if not self.resolve_secrets and not always:
            return value
        if value.startswith("env:"):
            variable = value[4:]
            if variable not in self.environ:
                raise self.fail(path, f"environment variable {variable} is not set")
            return self.environ[variable]
        if value.startswith("file:"):
            try:
                return Path(value[5:]).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise self.fail(path, f"cannot read secret file: {exc.strerror}") from None
        return value

    def prices(self, raw: Any) -> dict[str, Price]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise self.fail(("prices",), "must be a mapping of model name to {input, output}")
        prices: dict[str, Price] = {}
        for model, values in raw.items():
            path: tuple[str | int, ...] = ("prices", model)
            if not isinstance(values, dict):
                raise self.fail(path, "must be a mapping with input and output (USD per 1M tokens)")
            price = self.fill(Price, values, path)
            for key in ("input", "output", "cached_input"):
                amount = getattr(price, key)
                if amount is not None and amount < 0:
                    raise self.fail((*path, key), "must be >= 0")
            prices[str(model)] = price
        return prices


def clickhouse_url_with_password(url: str, password: str) -> str:
    """An http(s) ClickHouse URL carrying `password` (user: the URL's, else `default`), which is how
    clickhouse-connect takes it."""
    parsed = urlparse(url)
    user = quote(unquote(parsed.username or "default"), safe="")
    return parsed._replace(
        netloc=f"{user}:{quote(password, safe='')}@{parsed.netloc.rpartition('@')[2]}"
    ).geturl()


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def local_clickhouse(settings: Settings) -> Path | None:
    """The chDB data directory `warden serve` serves through a local ClickHouse process, or None
    (an http(s) ClickHouse, or chDB opened in process)."""
    ch = settings.storage.clickhouse_url
    if ch.startswith("chdb://") and settings.storage.embedded_clickhouse == "process":
        return Path(ch[len("chdb://") :])
    return None


def data_locations(settings: Settings) -> list[str]:
    """Where this configuration keeps its data, resolved (`chdb:///x` means `./x` here, unlike
    clickhouse-connect's own `chdb://` DSN), passwords hidden: for the start log and `check-config`."""
    from sqlalchemy.engine import make_url

    db = make_url(settings.storage.database_url)
    where = [f"metadata database: {db.render_as_string(hide_password=True)}"]
    ch = settings.storage.clickhouse_url
    if (served := local_clickhouse(settings)) is not None:
        where.append(
            f"request log: chDB in {served}, which `warden serve` serves to its workers as a local "
            f"ClickHouse on 127.0.0.1 (port in {served}.port, password in {served}.password)"
        )
    elif ch.startswith("chdb://"):
        where.append(f"request log: in-process chDB in {ch[len('chdb://') :]}")
    else:
        parsed = urlparse(ch)
        netloc = parsed.hostname or ""
        if parsed.port:
            netloc += f":{parsed.port}"
        where.append(f"request log: ClickHouse at {parsed.scheme}://{netloc}{parsed.path}")
    where.append(f"spool: {Path(settings.analytics.spool_dir).resolve()}")
    return where


def _local_path(spec: str, path: tuple[str, ...], builder: _Builder) -> str:
    """Resolve SQLAlchemy-style URL paths: `///rel` is relative to the working directory, `////abs`
    is absolute. Resolving once at load keeps every process (gunicorn workers too) on one path."""
    if not spec.startswith("/") or spec == "/":
        raise builder.fail(path, "needs a path after the scheme, e.g. ///var/clickhouse")
    return str(Path(spec[1:]).resolve())


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_AZURE_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-[a-z]+)?")


def _required(f: Any) -> bool:
    from dataclasses import MISSING

    return f.default is MISSING and f.default_factory is MISSING


_SECTIONS = {
    "server": ServerSettings,
    "storage": StorageSettings,
    "auth": AuthSettings,
    "analytics": AnalyticsSettings,
    "upstreams": None,
    "routing": RoutingSettings,
    "prices": None,
    "crypto": CryptoSettings,
    "transcripts": TranscriptSettings,
    "retention": None,
    "compliance": ComplianceSettings,
    "exports": ExportSettings,
    "policies": PolicySettings,
    "demo": DemoSettings,
    "limits": None,
    "budgets": None,
    "traffic": TrafficSettings,
    "cache": CacheSettings,
    "prompts": PromptSettings,
}
