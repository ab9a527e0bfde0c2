"""Warden's application factory: the one place that knows every package and wires them together."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from time import perf_counter
from typing import Any

from flask import Flask, request
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException

from analytics.access import scope_for
from analytics.clickhouse import connect
from analytics.metrics import Metrics
from analytics.queries import FilterError, spent_since
from analytics.sink import ClickHouseSink, EventSink
from policies.document import PolicyError
from policies.runtime import ModelPaths, Runtime
from policies.scanners import ScannerUnavailable
from policies.store import PolicyStore
from proxy import web_headers
from proxy.compliance.crypto import KeyRing, load_kek
from proxy.compliance.export_jobs import ExportJobs
from proxy.db import Clock, make_engine, make_sessions, utcnow
from proxy.errors import ProxyError, error_response
from proxy.experiments.assign import Experiments
from proxy.experiments.store import ExperimentStore
from proxy.formats import served_at
from proxy.gateway.forwarder import Forwarder
from proxy.gateway.lane import ModelLane
from proxy.gateway.router import Deployment, Router
from proxy.identity import audit
from proxy.identity.directory import Directory
from proxy.identity.keys import KeyStore
from proxy.identity.sessions import LoginGate, SessionPolicy, SessionStore
from proxy.prompts.store import PromptStore
from proxy.prompts.use import PromptResolver
from proxy.settings import ConfigError, Settings, UpstreamSettings, load_settings
from proxy.traffic.counters import Counters, MemoryCounters, RedisCounters
from proxy.traffic.gate import TrafficGate
from proxy.traffic.report import budget_report
from proxy.traffic.rules_store import RuleStore
from proxy.upstreams.anthropic import AnthropicUpstream
from proxy.upstreams.azure import AzureOpenAIUpstream
from proxy.upstreams.http import HttpUpstream

log = logging.getLogger("warden")


@dataclass(kw_only=True)
class Services:
    """Everything a running Warden holds open; `close()` flushes events and releases it all."""

    settings: Settings
    engine: Any
    db: sessionmaker[Session]
    keys: KeyStore
    directory: Directory
    web_sessions: SessionStore
    login_gate: LoginGate
    router: Router
    sink: EventSink
    forwarder: Forwarder
    keyring: KeyRing
    metrics: Metrics
    policies: PolicyStore
    local_engines: list[Any]
    exports: ExportJobs
    traffic: TrafficGate
    traffic_rules: RuleStore
    prompts: PromptStore
    experiments: ExperimentStore

    def __post_init__(self) -> None:
        self._readers = threading.local()
        self._opened: list[Any] = []

    def clickhouse(self) -> Any:
        """A ClickHouse client for reads, one per thread (chDB is fastest that way)."""
        client = getattr(self._readers, "client", None)
        if client is None:
            client = self._readers.client = connect(self.settings.storage.clickhouse_url)
            self._opened.append(client)
        return client

    def audit_entries(self, tenant: str, limit: int) -> list[audit.AuditRecord]:
        """The tenant's newest admin audit-log entries, newest first (the dashboards' audit page)."""
        return audit.entries(self.db, tenant=tenant, limit=limit)

    def budget_usage(self, actor: Any) -> list[dict[str, Any]]:
        """The budgets the actor may see, with spend and what remains (the cost page's table)."""
        from analytics.access import Permission, allows

        if not allows(actor, Permission.LIMITS_READ) and scope_for(actor, Permission.LIMITS_READ) is None:
            return []
        return budget_report(self, actor)

    def experiment_states(self, tenant: str) -> dict[str, dict[str, Any]]:
        """Per experiment of the tenant: its control (the variant listed first, the dashboard's
        baseline), state and winner (the experiments page)."""
        return {
            e.name: {"control": e.variants[0].name, "state": e.state, "winner": e.winner}
            for e in self.experiments.experiments(tenant)
        }

    def close(self) -> None:
        self.exports.close()
        self.sink.close()
        self.router.close()
        self.traffic.close()
        self.forwarder.cache.close()
        for local in self.local_engines:
            local.close()
        for client in self._opened:
            client.close()
        self.engine.dispose()


# HTTP upstreams by `type`; `onnx` is built apart (it shares engines between upstreams).
HTTP_UPSTREAMS: dict[str, type[HttpUpstream]] = {
    "openai": HttpUpstream,
    "anthropic": AnthropicUpstream,
    "azure_openai": AzureOpenAIUpstream,
}


def make_upstream(up: UpstreamSettings, engines: dict[tuple[str, str], Any]) -> Any:
    """An HTTP upstream, or a local ONNX model (one engine per folder and provider, shared by names)."""
    if up.type in HTTP_UPSTREAMS:
        return HTTP_UPSTREAMS[up.type](up)
    from proxy.upstreams.local.engine import OnnxEngine
    from proxy.upstreams.local.upstream import OnnxUpstream

    key = (up.path, up.provider)
    if key not in engines:
        engines[key] = OnnxEngine(
            up.path, provider=up.provider, max_batch=up.max_batch, threads=up.threads or None
        )
    defaults = {
        name: getattr(up, name)
        for name in ("temperature", "top_p", "max_tokens", "seed")
        if getattr(up, name) is not None
    }
    if up.stop:
        defaults["stop"] = list(up.stop)
    return OnnxUpstream(up.name, engines[key], up.models[0], defaults, apis=frozenset(up.apis) or None)


def build_services(settings: Settings, sink: EventSink | None = None, clock: Clock = utcnow) -> Services:
    engines: dict[tuple[str, str], Any] = {}
    engine = make_engine(settings.storage.database_url)
    db = make_sessions(engine)
    keys = KeyStore(db, cache_seconds=settings.auth.key_cache_seconds, clock=clock)
    auth = settings.auth
    web_sessions = SessionStore(
        db,
        SessionPolicy(
            idle=timedelta(minutes=auth.session_idle_minutes),
            absolute=timedelta(hours=auth.session_absolute_hours),
            max_failures=auth.login_max_failures,
            lockout=timedelta(minutes=auth.login_lockout_minutes),
        ),
        clock=clock,
    )
    router = Router(
        [
            Deployment(make_upstream(up, engines), up.models, up.retries, up.weight, up.max_in_flight)
            for up in settings.upstreams
        ],
        settings.routing,
    )
    if sink is None:
        url = settings.storage.clickhouse_url
        analytics = settings.analytics
        sink = ClickHouseSink(
            lambda: connect(url),
            analytics.spool_dir,
            queue_size=analytics.queue_size,
            batch_size=analytics.batch_size,
            flush_interval=analytics.flush_interval_seconds,
            segment_events=analytics.segment_events,
            fsync_interval=analytics.fsync_interval_ms / 1000,
        )
    keyring = KeyRing(
        db,
        load_kek(settings.crypto.kek),
        new_subjects_per_hour=settings.transcripts.new_subject_keys_per_hour,
    )
    policies = load_policies(settings)
    metrics = Metrics(sink, policies, router)
    rules = RuleStore(db)
    traffic = make_traffic_gate(settings, rules)
    forwarder = Forwarder(keys, router, sink, settings, keyring, policies, metrics.observe_overhead, traffic)
    prompts = PromptStore(db, settings.prompts.require_approval, clock)
    services = Services(
        settings=settings,
        engine=engine,
        db=db,
        keys=keys,
        directory=Directory(db),
        web_sessions=web_sessions,
        login_gate=LoginGate(settings.auth.login_attempts_per_minute),
        router=router,
        sink=sink,
        forwarder=forwarder,
        keyring=keyring,
        metrics=metrics,
        policies=policies,
        local_engines=list(engines.values()),
        exports=ExportJobs(Path(settings.exports.dir)),
        traffic=traffic,
        traffic_rules=rules,
        prompts=prompts,
        experiments=ExperimentStore(db, prompts, router.has, clock),
    )
    forwarder.prompts = PromptResolver(services.prompts)
    forwarder.experiments = Experiments(services.experiments)
    # A budget nobody has counted yet (a fresh Redis, a restart) starts from the request log.
    traffic.spend_source = lambda *args: spent_since(services.clickhouse(), *args)
    return services


def make_traffic_gate(settings: Settings, rules: RuleStore) -> TrafficGate:
    """Limits and budgets from the config and the admin API, in Redis when `storage.redis_url` is
    set, else in this process."""
    counters: Counters
    if settings.storage.redis_url:
        counters = RedisCounters(settings.storage.redis_url, settings.traffic.key_prefix)
    else:
        counters = MemoryCounters()
    return TrafficGate(settings.limits, settings.budgets, settings.traffic, counters, stored=rules.current)


def load_policies(settings: Settings) -> PolicyStore:
    """The policy files with their models loaded (once per process, before the first request)."""
    p = settings.policies
    runtime = Runtime(
        ModelPaths(p.pii_spacy_model, p.toxicity_model, p.toxicity_config, p.device, p.injection_model),
        clean_memo=p.clean_text_memo,
    )
    try:
        return PolicyStore(p.files, runtime, p.reload_interval_s)
    except (PolicyError, ScannerUnavailable) as exc:
        raise ConfigError(f"policies: {exc}") from None


def create_app(
    settings: Settings | None = None, *, sink: EventSink | None = None, clock: Clock = utcnow
) -> Flask:
    """Build a Warden app from validated settings (default: $WARDEN_CONFIG or embedded defaults).

    Opens nothing that breaks across a fork: the ClickHouse writer starts at the first request.
    """
    settings = settings or load_settings()
    if not settings.upstreams:
        log.warning(
            "no upstreams configured: every model request will answer 404 (see README, Configuration)"
        )
    # Flask's defaults would serve ./static/ and look up ./templates/ before the blueprints' own:
    # the root is the working directory, since "warden" is not an importable module.
    app = Flask(
        "warden", root_path=str(Path(__file__).resolve().parent), static_folder=None, template_folder=None
    )
    app.config["MAX_CONTENT_LENGTH"] = settings.server.max_body_bytes
    # Werkzeug would answer "/api/users/%2F%2Fx/roles" with a 308 to "/api/users/x/roles" (another
    # object), written as an absolute URL from the client's Host header: a path is served as sent.
    app.url_map.merge_slashes = False
    services = build_services(settings, sink, clock)
    app.extensions["warden"] = services

    from dashboards.views import blueprint as dashboards_blueprint
    from proxy.compliance.transcripts import bp as transcripts_bp
    from proxy.experiments.admin_api import bp as experiments_api_bp
    from proxy.experiments.pages import bp as experiment_pages_bp
    from proxy.gateway.feedback import bp as feedback_bp
    from proxy.gateway.policy_api import bp as policy_api_bp
    from proxy.gateway.routes import bp as proxy_bp
    from proxy.identity import guard
    from proxy.identity.admin_api import bp as admin_api_bp
    from proxy.identity.people import bp as people_bp
    from proxy.prompts.admin_api import bp as prompts_api_bp
    from proxy.prompts.pages import bp as prompt_pages_bp
    from proxy.traffic.admin_api import bp as traffic_api_bp

    guard.init_app(app, services.directory, services.web_sessions, settings.auth.admin_token)
    app.register_blueprint(proxy_bp)
    app.register_blueprint(people_bp)
    app.register_blueprint(admin_api_bp)
    app.register_blueprint(traffic_api_bp)
    app.register_blueprint(prompts_api_bp)
    app.register_blueprint(prompt_pages_bp)
    app.register_blueprint(experiments_api_bp)
    app.register_blueprint(experiment_pages_bp)
    app.register_blueprint(transcripts_bp)
    app.register_blueprint(policy_api_bp)
    app.register_blueprint(feedback_bp)
    app.register_blueprint(dashboards_blueprint(guard.requires))
    app.register_error_handler(HTTPException, _http_error)
    # Inside ProxyFix and the start clock, which web_headers and the line below put around it.
    app.wsgi_app = ModelLane(app.wsgi_app, services.forwarder, settings.server.max_body_bytes)  # type: ignore[method-assign]
    web_headers.init_app(app, settings.server.trusted_proxies)
    app.register_error_handler(FilterError, _filter_error)
    app.wsgi_app = _StartClock(app.wsgi_app)  # type: ignore[method-assign]
    return app


def _http_error(exc: HTTPException) -> Any:
    code = exc.code or 500
    names = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
    error = ProxyError(code, exc.description or exc.name, code=names.get(code, "http_error"))
    # On a model route (a wrong method, say) the answer keeps that API's shape: Anthropic's on /messages.
    fmt = served_at(request.path)
    return error_response(error, fmt.error_shape if fmt is not None else "openai")


def _filter_error(exc: FilterError) -> Any:
    code = "bad_filter" if exc.status == 400 else "outside_scope"
    return error_response(ProxyError(exc.status, str(exc), code=code))


class _StartClock:
    """Stamps arrival time before Flask runs, so overhead includes routing and request parsing."""

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        environ["warden.t0"] = perf_counter()
        return self.wsgi_app(environ, start_response)
