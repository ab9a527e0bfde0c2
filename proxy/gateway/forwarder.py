"""Forwarding: authenticate, validate, route, relay and record one OpenAI-style request."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from time import perf_counter
from typing import Any

from flask import Request, Response
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from analytics.events import TranscriptRow
from analytics.sink import EventSink, SpoolUnavailable
from policies.document import CachePolicy
from policies.engine import Hit, Report
from policies.findings import Finding, Placeholders
from policies.store import Caller, PolicyStore
from proxy.compliance.crypto import KeyRing
from proxy.errors import (
    ProxyError,
    anthropic_error_body,
    bad_request,
    error_body,
    error_response,
    unauthorized,
)
from proxy.experiments.assign import Experiments, Header
from proxy.formats import FORMATS, WireFormat, served_at, validation
from proxy.gateway import governance
from proxy.gateway.cache import OPTIONS_FIELD, CachedAnswer, Lookup, ResponseCache, client_directive
from proxy.gateway.exchange import AppliedPolicy, Exchange
from proxy.gateway.plans import PASSED_HEADERS, Plans
from proxy.gateway.refusal import is_refusal
from proxy.gateway.relay import GuardedSseRelay, SseRelay
from proxy.gateway.router import NoRoute, Routed, Router, RoutingFailed, RoutingRefused, T
from proxy.identity.keys import KeyStore, Principal
from proxy.jsonbody import parse_json
from proxy.prompts.use import PROMPT_HEADER, PromptResolver, apply_prompt, prompt_options_from_headers
from proxy.settings import Settings
from proxy.traffic.gate import TrafficGate
from proxy.upstreams.http import UpstreamFailure, UpstreamReply, UpstreamStream

log = logging.getLogger(__name__)

FAILURE_STATUS = {"timeout": 504, "unreachable": 502, "bad_response": 502}
UNROUTED_MODEL = "(unrouted)"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class Forwarder:
    def __init__(
        self,
        keys: KeyStore,
        router: Router,
        sink: EventSink,
        settings: Settings,
        keyring: KeyRing,
        policies: PolicyStore,
        on_overhead: Callable[[float], None] | None = None,
        traffic: TrafficGate | None = None,
    ) -> None:
        self.keys = keys
        self.router = router
        self.sink = sink
        self.prices = settings.prices
        self.settings = settings
        self.keyring = keyring
        self.policies = policies
        self._stream_usage = {up.name: up.stream_usage for up in settings.upstreams}
        self._self_hosted = frozenset(up.name for up in settings.upstreams if up.self_hosted)
        self._store_transcripts = settings.transcripts.store == "full"
        self._fail_closed = settings.compliance.fail_closed
        self._on_overhead = on_overhead
        self.traffic = traffic
        # Models only self-hosted upstreams serve: no price is needed under a budget (they cost 0).
        paid = {m for up in settings.upstreams if not up.self_hosted for m in up.models}
        self._free_models = frozenset(m for up in settings.upstreams for m in up.models if m not in paid)
        self.cache = ResponseCache.from_settings(settings.cache, settings.storage.redis_url, keyring)
        # Set by the app factory: requests that name a prompt (`warden.prompt`) get it rendered.
        self.prompts: PromptResolver | None = None
        # Set by the app factory: requests for a prompt or model under a running experiment get a variant.
        self.experiments: Experiments | None = None

    # -- entry points --------------------------------------------------------------------------

    def forward(self, request: Request, route: str) -> Response:
        exchange = Exchange(route, t0=request.environ.get("warden.t0", perf_counter()))
        try:
            exchange.principal = self.authenticate(request)
            if self._fail_closed and not self.sink.healthy():
                raise ProxyError(
                    503,
                    "Warden cannot record requests right now; refusing to serve unrecorded.",
                    type="server_error",
                    code="recording_unavailable",
                )
            raw = request.get_data(cache=False)
            passed = _passed_headers(request)
            return self._forward(
                exchange, route, raw, passed, request.headers.get("cache-control", ""), request.headers.get
            )
        except ProxyError as error:
            return self._fail(exchange, error)
        except RequestEntityTooLarge:
            return self._fail(
                exchange, ProxyError(413, "The request body is too large.", code="request_too_large")
            )
        except ClientDisconnected:
            return self._fail(
                exchange, ProxyError(400, "The request body was cut short.", code="incomplete_body")
            )
        except Exception:
            # Log the type and place only: the request body may hold personal data.
            log.exception("internal error handling request %s", exchange.request_id)
            internal = ProxyError(
                500, "Internal error in Warden.", type="server_error", code="internal_error"
            )
            return self._fail(exchange, internal)

    def list_models(self, request: Request, model_id: str | None = None) -> Response:
        """`GET /v1/models` (or one model): the models the caller's key may use, in OpenAI's shape, or
        Anthropic's when the client sends `anthropic-version`."""
        exchange = Exchange("models", t0=request.environ.get("warden.t0", perf_counter()))
        anthropic = "anthropic-version" in request.headers
        try:
            principal = exchange.principal = self.authenticate(request)
            allowed = [m for m in self.router.models() if principal.may_use(m)]
            if model_id is not None and model_id not in allowed:
                raise ProxyError(
                    404,
                    f"The model '{model_id[:256]}' does not exist or is not available to this API key.",
                    param="model",
                    code="model_not_found",
                )
        except ProxyError as error:
            return self._fail(exchange, error, "anthropic" if anthropic else "openai")
        models = allowed if model_id is None else [model_id]
        if anthropic:
            data: list[dict[str, Any]] = [
                {"type": "model", "id": m, "display_name": m, "created_at": "1970-01-01T00:00:00Z"}
                for m in models
            ]
            listing: dict[str, Any] = {
                "data": data,
                "has_more": False,
                "first_id": models[0] if models else None,
                "last_id": models[-1] if models else None,
            }
        else:
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "warden"} for m in models]
            listing = {"object": "list", "data": data}
        exchange.status = 200
        body = listing if model_id is None else data[0]
        return self._json(exchange, json.dumps(body).encode(), 200, {})

    def unsupported(self, request: Request, path: str) -> Response:
        """Any other `/v1/...` path: an explicit answer (not a bare 404 page), logged like a request."""
        exchange = Exchange("unsupported", t0=request.environ.get("warden.t0", perf_counter()))
        served = ", ".join(f"/v1/{f.path}" for f in FORMATS.values())
        fmt = served_at(f"/v1/{path}")
        if fmt is not None:
            error = ProxyError(405, f"Use POST for /v1/{path}.", code="method_not_allowed")
        else:
            error = ProxyError(
                404,
                f"Warden does not serve {request.method} /v1/{path[:200]}. Endpoints: {served}, /v1/models.",
                code="unsupported_endpoint",
            )
        try:
            exchange.principal = self.authenticate(request)
        except ProxyError as denied:
            error = denied
        if fmt is not None:  # a served route asked with another method: that route's shape
            shape = fmt.error_shape
        else:
            shape = "anthropic" if "anthropic-version" in request.headers else "openai"
        return self._fail(exchange, error, shape)

    def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            # Azure OpenAI clients send `api-key`, Anthropic's send `x-api-key`.
            token = request.headers.get("api-key", "") or request.headers.get("x-api-key", "")
        if not token:
            raise unauthorized("Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'.")
        principal = self.keys.authenticate(token.strip())
        if principal is None:
            raise unauthorized("Invalid, revoked or expired API key.")
        return principal

    # -- the flow ------------------------------------------------------------------------------

    def _use_prompt(
        self, exchange: Exchange, route: str, options: dict[str, Any], payload: dict[str, Any], header: Header
    ) -> None:
        if self.prompts is None:
            return
        assert exchange.principal is not None
        tenant = exchange.principal.tenant
        if self.experiments is not None:
            exchange.assignment = self.experiments.assign_prompt(tenant, options, payload, header)
        exchange.prompt_use = apply_prompt(self.prompts, tenant, route, options, payload)

    def _forward(
        self,
        exchange: Exchange,
        route: str,
        raw: bytes,
        headers: Mapping[str, str],
        cache_control: str = "",
        header: Header = lambda name: None,
    ) -> Response:
        fmt = FORMATS[route]
        payload = validation.parse_json_object(raw)
        options = None
        if OPTIONS_FIELD in payload:
            # Warden's own options: read here, never sent on.
            options = payload.pop(OPTIONS_FIELD)
            if isinstance(options, dict) and "prompt" in options:
                self._use_prompt(exchange, route, options, payload, header)
            raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        elif header(PROMPT_HEADER) is not None:
            # The same, named in headers by a client that cannot add a body field.
            self._use_prompt(exchange, route, prompt_options_from_headers(header), payload, header)
            raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        if self.experiments is not None:
            assert exchange.principal is not None
            tenant = exchange.principal.tenant
            if exchange.assignment is None:
                exchange.assignment = self.experiments.assign_model(tenant, payload, header)
                rewritten = exchange.assignment is not None
            else:
                # A promoted model is the route for everyone, prompt experiments included.
                rewritten = self.experiments.route_promoted(tenant, payload)
            if rewritten:
                raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        directive = client_directive(cache_control, options)
        exchange.model = fmt.check(payload)
        exchange.streamed = bool(payload.get("stream"))
        exchange.prompt = fmt.prompt(payload)
        user = payload.get("user")
        if isinstance(user, str) and user:
            exchange.subject = user[:256]
        principal = self._authorize_model(exchange)
        if self.traffic is not None:
            # Before any policy work: a refused request costs Warden almost nothing.
            exchange.ticket = self.traffic.admit(
                principal,
                exchange.model,
                payload,
                len(raw),
                self.prices.get(exchange.model),
                exchange.model in self._free_models,
            )
        caller = Caller(
            principal.tenant, principal.team, principal.project, principal.key_id, exchange.model, route
        )
        compiled = self.policies.select(caller)
        applied = exchange.applied = AppliedPolicy(
            compiled, Report(compiled.label), Placeholders(), principal.tenant
        )
        if exchange.ticket is not None:
            for budget in exchange.ticket.soft:  # passed its soft threshold: let through, flagged
                applied.report.add(Hit("input", "budget", Finding(f"budget_soft:{budget}", 1.0), "flag"))
        try:
            _check_upstream_context(applied, payload)
            checked = governance.check_request(applied, fmt, exchange.model, payload, raw)
        except ProxyError:
            exchange.prompt = None  # a blocked prompt (a leaked key, say) is not kept, even sealed
            raise
        raw, exchange.prompt = checked.body, checked.prompt
        plans = Plans(
            fmt, payload, raw, self._stream_usage, streamed=exchange.streamed, client_headers=headers
        )
        # The key is made of the request as the upstream sees it: masked, so no personal data in it.
        lookup = self.cache.plan(
            principal.tenant,
            route,
            exchange.model,
            payload,
            streamed=exchange.streamed,
            policy=_cache_policy(compiled.policy.cache, principal.cache),
            directive=directive,
        )
        if lookup is not None:
            exchange.cache_status = "miss" if lookup.read else "bypass"
            hit = self.cache.get(lookup)
            # A stream stored without a usage event cannot serve a client that asked for one.
            if hit is not None and _serves(hit, exchange.streamed, plans.client_wants_usage):
                return self._replay(exchange, plans, hit)
        if exchange.streamed:
            return self._stream(exchange, plans, lookup)

        routed = self._routed(
            exchange, plans, lambda: self.router.complete(exchange.model, str(exchange.request_id), plans)
        )
        reply = plans.answer(routed.upstream, routed.result)
        response = self._relay_reply(exchange, reply)
        if lookup is not None and lookup.write and reply.status == 200 and response.status_code == 200:
            self._store(exchange, lookup, CachedAnswer(False, routed.upstream, reply.body))
        return response

    def _replay(self, exchange: Exchange, plans: Plans, hit: CachedAnswer) -> Response:
        """A stored answer, through the same output rules and restoration as a fresh one."""
        exchange.cache_hit = True
        exchange.cache_status = "hit"
        exchange.upstream = hit.upstream
        if not hit.streamed:
            return self._relay_reply(exchange, UpstreamReply(200, {}, hit.body))
        stream = UpstreamStream(200, {}, iter([hit.body]))
        # The stored stream's usage event, when this client did not ask for one, is removed.
        drop_usage = hit.usage_chunk and plans.usage_droppable and not plans.client_wants_usage
        return self._relay_stream(exchange, stream, drop_usage, None)

    def _store(self, exchange: Exchange, lookup: Lookup, answer: CachedAnswer) -> None:
        """Keep a fresh answer, unless the output rules blocked it (errors and cut streams never get here)."""
        applied = exchange.applied
        if applied is not None and any(hit.action in ("block", "late") for hit in applied.report.hits):
            return
        try:
            self.cache.put(lookup, answer)
        except Exception:
            log.exception("response cache: could not store the answer of request %s", exchange.request_id)

    def _authorize_model(self, exchange: Exchange) -> Principal:
        """The caller, once the model is known to be routed and allowed for its key."""
        model = exchange.model
        if not self.router.has(model):
            # The name is the caller's own string: rows, exports and dashboards get a fixed label.
            exchange.model = UNROUTED_MODEL
            raise ProxyError(
                404,
                f"The model '{model}' does not exist or is not routed by Warden.",
                param="model",
                code="model_not_found",
            )
        assert exchange.principal is not None
        if not exchange.principal.may_use(model):
            raise ProxyError(
                403,
                f"This API key may not use the model '{model}'.",
                type="permission_error",
                param="model",
                code="model_not_allowed",
            )
        return exchange.principal

    @staticmethod
    def _routed(exchange: Exchange, plans: Plans, route: Callable[[], Routed[T]]) -> Routed[T]:
        """Run the routing; its upstream and waiting time go into the exchange, failures become errors."""
        try:
            routed = route()
        except NoRoute:
            raise plans.no_route(exchange.model) from None
        except RoutingRefused as refused:
            exchange.attempts = 0
            raise ProxyError(
                refused.status,
                refused.message,
                type="rate_limit_error" if refused.status == 429 else "server_error",
                code=refused.code,
                headers={"retry-after": str(refused.retry_after_s)},
            ) from None
        except RoutingFailed as failed:
            exchange.upstream_s += failed.waited_s
            exchange.attempts = failed.attempts
            failure = failed.failure
            exchange.upstream = failure.upstream
            raise ProxyError(
                FAILURE_STATUS[failure.kind],
                f"Upstream '{failure.upstream}' "
                + ("timed out." if failure.kind == "timeout" else "failed to answer properly."),
                type="upstream_error",
                code=f"upstream_{failure.kind}",
            ) from None
        exchange.upstream_s += routed.waited_s
        exchange.upstream = routed.upstream
        exchange.attempts = routed.attempts
        return routed

    def _relay_reply(self, exchange: Exchange, reply: UpstreamReply) -> Response:
        status, body = reply.status, reply.body
        parsed: Any = None
        try:
            parsed = parse_json(body) if body else None
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ProxyError(
                502,
                f"Upstream '{exchange.upstream}' returned a response that is not JSON.",
                type="upstream_error",
                code="upstream_bad_response",
            )
        if status == 200:
            fmt = FORMATS[exchange.route]
            usage, reason, choices = fmt.summary(parsed)
            exchange.take_usage(usage)
            exchange.choices = choices
            exchange.finish_reason = reason or exchange.finish_reason
            exchange.answer = parsed.get("choices") if "choices" in parsed else parsed
            applied = exchange.applied
            if applied is not None and applied.guards_output:
                answer = governance.check_answer(applied, fmt, parsed)
                # The transcript keeps the answer after output masks, before restoration: values the
                # input rules masked never reach storage.
                exchange.answer = answer.kept
                if answer.changed:
                    body = json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode()
                    _, reason, _ = fmt.summary(parsed)
                    exchange.finish_reason = reason or exchange.finish_reason
        elif status >= 500:
            raise ProxyError(
                502,
                f"Upstream '{exchange.upstream}' answered HTTP {status}.",
                type="upstream_error",
                code="upstream_error",
            )
        else:
            exchange.error_class = "upstream_rate_limited" if status == 429 else f"upstream_{status}"
        exchange.status = status
        return self._json(exchange, body, status, reply.headers)

    def _stream(self, exchange: Exchange, plans: Plans, lookup: Lookup | None = None) -> Response:
        routed = self._routed(
            exchange, plans, lambda: self.router.stream(exchange.model, str(exchange.request_id), plans)
        )
        stream = routed.result
        if stream.status != 200:
            try:
                started = perf_counter()
                body = stream.read_all()
                exchange.upstream_s += perf_counter() - started
            except UpstreamFailure:
                body = b""
            finally:
                stream.close()
            exchange.streamed = False
            reply = UpstreamReply(stream.status, stream.headers, body)
            return self._relay_reply(exchange, plans.answer(routed.upstream, reply))
        stream = plans.stream(routed.upstream, stream)
        injected = plans.injected_usage(routed.upstream)
        keep = lookup if lookup is not None and lookup.write else None
        return self._relay_stream(exchange, stream, injected, keep)

    def _relay_stream(
        self, exchange: Exchange, stream: UpstreamStream, drop_usage: bool, keep: Lookup | None
    ) -> Response:
        exchange.status = 200
        relay: SseRelay
        fmt, applied = FORMATS[exchange.route], exchange.applied
        if applied is not None and applied.guards_output:
            relay = GuardedSseRelay(fmt, applied, drop_usage_chunk=drop_usage)
        else:
            relay = SseRelay(fmt, drop_usage_chunk=drop_usage)
        exchange.head_overhead_s = exchange.overhead_now()
        headers = {
            **stream.headers,
            **SSE_HEADERS,
            **self._warden_headers(exchange, exchange.head_overhead_s),
        }
        return Response(
            self._relay_events(exchange, stream, relay, keep),
            status=200,
            headers=headers,
            content_type="text/event-stream; charset=utf-8",
            direct_passthrough=True,
        )

    def _relay_events(
        self, exchange: Exchange, stream: UpstreamStream, relay: SseRelay, keep: Lookup | None = None
    ) -> Iterator[bytes]:
        chunks = stream.chunks
        recorded = False
        # The upstream's events as they came (before output rules), for the cache; None once too large.
        kept: list[bytes] | None = [] if keep is not None else None
        kept_bytes, limit = 0, self.cache.max_body_bytes

        def finish() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                relay.final_checks()
                exchange.end_s = perf_counter()
                exchange.take_outcome(relay.outcome())
                # The stream was already delivered; an event the disk refused stays queued in memory.
                with contextlib.suppress(SpoolUnavailable):
                    self._record(exchange)

        try:
            while True:
                waited = perf_counter()
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                except UpstreamFailure as failure:
                    exchange.error_class = f"upstream_{failure.kind}"
                    finish()
                    message = f"Upstream '{failure.upstream}' failed mid-stream."
                    yield _sse_error(FORMATS[exchange.route], message, failure.kind)
                    return
                working = perf_counter()
                exchange.upstream_s += working - waited
                if kept is not None:
                    kept_bytes += len(chunk)
                    kept = kept if kept_bytes <= limit else None
                    if kept is not None:
                        kept.append(chunk)
                out = relay.feed(chunk)
                if exchange.ttft_s is None and out:
                    exchange.ttft_s = perf_counter() - exchange.t0
                exchange.stream_work_s += perf_counter() - working
                if relay.done:
                    # Record before the client can see [DONE]: once it has the whole answer, its
                    # row must already be on its way (tests and exports rely on that order).
                    if relay.malformed:
                        exchange.error_class = "upstream_bad_response"
                    finish()
                if out:
                    yield out
                if relay.blocked:
                    return  # the upstream is closed below; the client got content_filter and [DONE]
            tail = relay.finish()
            if not relay.done:
                exchange.error_class = "upstream_incomplete_stream"
            finish()
            clean = relay.done and not relay.blocked and not relay.malformed and not exchange.error_class
            if keep is not None and kept is not None and clean:
                usage = relay.outcome().usage is not None
                self._store(exchange, keep, CachedAnswer(True, exchange.upstream, b"".join(kept), usage))
            if tail:
                yield tail
        except GeneratorExit:
            if not recorded:
                exchange.error_class = "client_disconnected"
            raise
        finally:
            stream.close()
            finish()

    # -- responses and records -----------------------------------------------------------------

    def _json(self, exchange: Exchange, body: bytes, status: int, headers: Mapping[str, str]) -> Response:
        response = Response(body, status=status, mimetype="application/json")
        for name, value in headers.items():
            response.headers[name] = value
        exchange.end_s = perf_counter()
        for name, value in self._warden_headers(
            exchange, exchange.end_s - exchange.t0 - exchange.upstream_s
        ).items():
            response.headers[name] = value
        try:
            self._record(exchange)
        except SpoolUnavailable:
            if self._fail_closed:
                withheld = ProxyError(
                    503,
                    "Warden could not record this exchange durably; the answer is withheld.",
                    type="server_error",
                    code="recording_unavailable",
                )
                return error_response(withheld, _shape(exchange.route))
        return response

    def _fail(self, exchange: Exchange, error: ProxyError, shape: str | None = None) -> Response:
        exchange.status = error.status
        exchange.error_class = error.error_class
        exchange.streamed = exchange.streamed and exchange.status == 200
        response = error_response(error, shape or _shape(exchange.route))
        exchange.end_s = perf_counter()
        for name, value in self._warden_headers(
            exchange, exchange.end_s - exchange.t0 - exchange.upstream_s
        ).items():
            response.headers[name] = value
        with contextlib.suppress(SpoolUnavailable):  # an error answer withholds nothing
            self._record(exchange)
        return response

    @staticmethod
    def _warden_headers(exchange: Exchange, overhead_s: float) -> dict[str, str]:
        headers = {
            "x-warden-request-id": str(exchange.request_id),
            "x-warden-overhead-ms": f"{max(overhead_s, 0.0) * 1000:.3f}",
        }
        if exchange.ticket is not None:
            headers.update(exchange.ticket.headers)
        if exchange.applied is not None:
            report = exchange.applied.report
            headers["x-warden-policy"] = report.policy
            # For a stream this is the decision on the prompt; the answer's goes to the event row.
            headers["x-warden-policy-decision"] = report.decision
        if exchange.cache_status:
            headers["x-warden-cache"] = exchange.cache_status
        return headers

    def _record(self, exchange: Exchange) -> None:
        """Emit the event (and its sealed transcript). Raises SpoolUnavailable when it is not durable."""
        if exchange.ticket is not None and self.traffic is not None:
            try:
                cost = exchange.cost_micro_usd(
                    self.prices.get(exchange.model), exchange.upstream in self._self_hosted
                )
                tokens = exchange.prompt_tokens + exchange.completion_tokens
                if exchange.cache_hit:  # served from the cache: no upstream tokens, nothing spent
                    tokens, cost = 0, 0
                self.traffic.settle(exchange.ticket, tokens, cost or 0)
            except Exception:
                log.exception("could not settle the limits of request %s", exchange.request_id)
        try:
            principal = exchange.principal
            subject_hash = ""
            if principal is not None and exchange.subject:
                subject_hash = self.keyring.subject_hash(principal.tenant, exchange.subject)
            team = principal.team if principal else ""
            event = exchange.to_event(
                self.prices.get(exchange.model),
                subject_hash,
                self.settings.retention_days(team),
                exchange.status == 200
                and exchange.route in FORMATS
                and is_refusal(FORMATS[exchange.route].first_text(exchange.answer)),
                self_hosted=exchange.upstream in self._self_hosted,
            )
            transcript = None
            if self._store_transcripts and principal is not None and exchange.prompt is not None:
                transcript = self._seal(exchange, principal.tenant, team, subject_hash)
            if self._on_overhead is not None:
                self._on_overhead(event.overhead_ms / 1000)
        except Exception:
            log.exception("could not build the record of request %s", exchange.request_id)
            return
        self.sink.emit(event, transcript)

    def _seal(self, exchange: Exchange, tenant: str, team: str, subject_hash: str) -> TranscriptRow:
        content = {
            "route": exchange.route,
            "model": exchange.model,
            "request": exchange.prompt,
            "response": exchange.answer,
        }
        caller = exchange.principal.key_id if exchange.principal is not None else ""
        sealed = self.keyring.seal(
            tenant, subject_hash, exchange.request_id, exchange.ts, content, caller=caller
        )
        # Transcripts may be kept for less time than metrics, never for longer.
        days, team_days = self.settings.transcripts.retention_days, self.settings.retention_days(team)
        if team_days and (days == 0 or team_days < days):
            days = team_days
        return TranscriptRow(
            tenant,
            team,
            exchange.request_id,
            exchange.ts,
            subject_hash,
            sealed.key_id,
            sealed.nonce,
            sealed.ciphertext,
            days,
        )


def _passed_headers(request: Request) -> dict[str, str]:
    """The client headers an upstream API needs (`anthropic-beta`). They are sent on as they came, so
    they must be printable ASCII, as httpx writes headers: an `é` raised UnicodeEncodeError (a 500)."""
    passed = {}
    for name in PASSED_HEADERS:
        value = request.headers.get(name)
        if value is None:
            continue
        if not (value.isascii() and value.isprintable()):
            raise bad_request(f"The '{name}' header must be printable ASCII.", param=name)
        passed[name] = value
    return passed


def _cache_policy(policy: CachePolicy, key_cache: bool | None) -> CachePolicy:
    """The policy's cache settings, with the API key's own switch (None: the policy decides)."""
    if key_cache is None or key_cache == policy.enabled:
        return policy
    return dataclasses.replace(policy, enabled=key_cache)


def _serves(hit: CachedAnswer, streamed: bool, wants_usage: bool) -> bool:
    return hit.streamed == streamed and not (streamed and wants_usage and not hit.usage_chunk)


def _shape(route: str) -> str:
    fmt = FORMATS.get(route)
    return fmt.error_shape if fmt is not None else "openai"


def _sse_error(fmt: WireFormat, message: str, kind: str) -> bytes:
    """An error event in the stream's own shape: SDKs raise it instead of reporting a cut stream."""
    if fmt.error_shape == "anthropic":
        return b"event: error\ndata: " + anthropic_error_body(502, message) + b"\n\n"
    if not fmt.done_marker:
        event = {"type": "error", "code": f"upstream_{kind}", "message": message, "param": None}
        return b"event: error\ndata: " + json.dumps(event).encode() + b"\n\n"
    body = error_body(message, "upstream_error", f"upstream_{kind}")
    return b"data: " + body + b"\n\n"


def _check_upstream_context(applied: AppliedPolicy, payload: dict[str, Any]) -> None:
    """A request that continues context the upstream keeps (`previous_response_id`, `conversation`)
    carries text Warden never saw: the policy refuses it, or lets it pass and the row says so."""
    if not (payload.get("previous_response_id") or payload.get("conversation")):
        return
    refuse = applied.policy.policy.upstream_context == "refuse"
    hit = Hit("input", "upstream_context", Finding("upstream_context", 1.0), "block" if refuse else "flag")
    applied.report.add(hit)
    if refuse:
        raise ProxyError(
            400,
            f"Policy {applied.policy.label} refuses requests that continue context kept by the upstream "
            "(previous_response_id, conversation): Warden cannot check text it never saw. Send the "
            "whole conversation in 'input', or use a policy with 'upstream_context: allow'.",
            param="previous_response_id",
            code="upstream_context_refused",
        )
