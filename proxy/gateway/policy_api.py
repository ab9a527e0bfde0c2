"""Policy authors' endpoints: see which policies are active, and run one on a text without a model."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from analytics.access import Permission
from policies.document import ROUTES, STAGES
from policies.evaluate import evaluate_text
from policies.store import Caller
from proxy.errors import access_error as error
from proxy.identity.guard import requires
from proxy.jsonbody import NotJson, parse_json

bp = Blueprint("policy_api", __name__)
MAX_TEXT = 100_000


@bp.post("/v1/warden/evaluate")
@requires(Permission.POLICIES_READ)
def evaluate() -> Response | tuple[Response, int]:
    try:
        body = parse_json(request.get_data())
    except NotJson as exc:
        return error(400, f"send a JSON object with 'text' (this body is not JSON: {exc})", "bad_request")
    if not isinstance(body, dict):
        return error(400, "send a JSON object with 'text'", "bad_request")
    unknown = sorted(set(body) - {"text", "stage", "policy", "team", "project", "model", "route"})
    if unknown:
        return error(400, f"unknown field {unknown[0]!r}", "bad_request")
    text = body.get("text")
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        return error(400, f"'text' must be a string of at most {MAX_TEXT} characters", "bad_request")
    stage = body.get("stage", "input")
    if stage not in STAGES:
        return error(400, "'stage' must be input or output", "bad_request")
    fields: dict[str, str] = {}
    for name in ("policy", "team", "project", "model", "route"):
        value = body.get(name, "")
        if not isinstance(value, str) or len(value) > 256:
            return error(400, f"'{name}' must be a string", "bad_request")
        fields[name] = value
    if fields["route"] and fields["route"] not in ROUTES:
        return error(400, f"'route' must be one of {', '.join(ROUTES)}", "bad_request")
    store = current_app.extensions["warden"].policies
    if fields["policy"]:
        compiled = store.by_name(fields["policy"])
        if compiled is None or not _visible(compiled, g.warden_actor.tenant):
            return error(404, f"no active policy named {fields['policy']!r}", "not_found")
    else:
        compiled = store.select(
            Caller(
                tenant=g.warden_actor.tenant,
                team=fields["team"],
                project=fields["project"],
                model=fields["model"],
                route=fields["route"] or "chat.completions",
            )
        )
    return jsonify(evaluate_text(compiled, stage, text))


@bp.get("/api/policies")
@requires(Permission.POLICIES_READ)
def active() -> Response:
    store = current_app.extensions["warden"].policies
    tenant = g.warden_actor.tenant
    store.reload_if_changed()

    def describe(compiled: Any, default: bool) -> dict[str, Any]:
        p = compiled.policy
        return {
            "name": p.name,
            "version": p.version,
            "description": p.description,
            # The file's name, not its path: where the deployment keeps files is the operator's business.
            "source": PurePath(p.source).name if p.source else p.source,
            "default": default,
            "scope": {k: list(v) for k, v in p.scope.items() if v},
            "rules": [
                {"id": r.id, "stage": r.stage, "scanner": r.scanner, "action": r.action, "mode": r.mode}
                for r in p.rules
            ],
            "inactive_rules": compiled.inactive,
        }

    return jsonify(
        {
            "policies": [describe(store.fallback, True)]
            + [describe(c, False) for c in store.policies if _visible(c, tenant)],
            "reload_failures": store.reload_failures,
            "last_error": store.last_error,
        }
    )


def _visible(compiled: Any, tenant: str) -> bool:
    """A policy scoped to other tenants is theirs: not listed to, nor run for, this tenant's people."""
    tenants = compiled.policy.scope.get("tenants")
    return not tenants or tenant in tenants
