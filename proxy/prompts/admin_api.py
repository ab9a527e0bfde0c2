"""Prompts in the admin API: `GET /api/prompts`, `POST /api/prompts/<name>/versions`,
`GET /api/prompts/<name>?label=|version=`, `PUT /api/prompts/<name>/labels/<label>`,
`POST /api/prompts/<name>/versions/<n>/approve`, `GET /api/prompts/<name>/diff?from=&to=`.

Prompts belong to the tenant (its teams share them), so both permissions are tenant-wide and the
`requires` guard, which then accepts only tenant-wide bindings, is the whole check. Clients that
render prompts themselves read one version with an API key of the same tenant; its ETag is the version's
hash, so a client polling a label gets a 304 until the label moves.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from analytics.access import Actor, Permission, allows
from proxy.errors import access_error
from proxy.identity.api_views import answer_refusals, change, json_body, signed_in
from proxy.identity.directory import IdentityError
from proxy.identity.guard import deny, requires
from proxy.prompts.store import PromptStore, describe

bp = Blueprint("prompts_api", __name__, url_prefix="/api")
answer_refusals(bp, {404: "not_found", 403: "approval_refused", 409: "conflict"})


def _store() -> PromptStore:
    store: PromptStore = current_app.extensions["warden"].prompts
    return store


def _number(value: Any, name: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | str)
        or not str(value).isdigit()
        or int(value) < 1
    ):
        raise IdentityError(f"{name} must be a version number (1, 2, ...)")
    return int(value)


@bp.get("/prompts")
@requires(Permission.PROMPTS_READ)
def list_prompts() -> Response:
    actor = signed_in()
    rows = [
        {"prompt": s.name, "versions": s.versions, "labels": dict(s.labels)}
        for s in _store().summaries(actor.tenant)
    ]
    return jsonify({"prompts": rows})


@bp.post("/prompts/<name>/versions")
@requires(Permission.PROMPTS_MANAGE)
def create_version(name: str) -> Response:
    version = _store().create_version(signed_in().tenant, name, json_body(), change())
    response = jsonify(describe(version))
    response.status_code = 201
    return response


def _tenant_of_key() -> str | None:
    """The tenant of the API key the request carries, if it carries a valid one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        token = request.headers.get("x-api-key", "")
    principal = current_app.extensions["warden"].keys.authenticate(token.strip()) if token.strip() else None
    return None if principal is None else principal.tenant


def get_prompt(name: str) -> Response:
    """One version (`?label=`, `?version=`, else the newest) for a person with `prompts:read` or an API
    key of the tenant; `If-None-Match` with its ETag answers 304."""
    actor: Actor | None = g.get("warden_actor")
    tenant = _tenant_of_key() if actor is None else None
    if tenant is None:
        if actor is None:
            return access_error(
                401, "Send an API key of the tenant, sign in, or send an admin token.", "unauthenticated"
            )
        if not _allowed(actor):
            return access_error(
                403, f"permission {Permission.PROMPTS_READ.value!r} is required", "permission_denied"
            )
        tenant = actor.tenant
    label = request.args.get("label")
    raw_number = request.args.get("version")
    if label is not None and raw_number is not None:
        raise IdentityError("ask for a label or a version, not both")
    number = None if raw_number is None else _number(raw_number, "version")
    version = _store().get(tenant, name, label=label, number=number)
    unchanged = version.etag in request.if_none_match
    response = Response(status=304) if unchanged else jsonify(describe(version))
    response.set_etag(version.etag)
    response.headers["Cache-Control"] = "no-cache"  # revalidate every time: a label moves without warning
    return response


def _allowed(actor: Actor) -> bool:
    if allows(actor, Permission.PROMPTS_READ):
        return True
    deny(actor, Permission.PROMPTS_READ.value)
    return False


# People need `prompts:read`; an API key of the tenant may read too (the guard cannot say both).
get_prompt.warden_permission = Permission.PROMPTS_READ.value  # type: ignore[attr-defined]
bp.add_url_rule("/prompts/<name>", view_func=get_prompt, methods=["GET"])


@bp.put("/prompts/<name>/labels/<label>")
@requires(Permission.PROMPTS_MANAGE)
def set_label(name: str, label: str) -> Response:
    number = _number(json_body().get("version"), "field 'version'")
    return jsonify(describe(_store().set_label(signed_in().tenant, name, label, number, change())))


@bp.post("/prompts/<name>/versions/<int:number>/approve")
@requires(Permission.PROMPTS_MANAGE)
def approve(name: str, number: int) -> Response:
    return jsonify(describe(_store().approve(signed_in().tenant, name, number, change())))


@bp.get("/prompts/<name>/diff")
@requires(Permission.PROMPTS_READ)
def diff(name: str) -> Response:
    old = _number(request.args.get("from"), "'from'")
    new = _number(request.args.get("to"), "'to'")
    return jsonify(
        {"prompt": name, "from": old, "to": new, "diff": _store().diff(signed_in().tenant, name, old, new)}
    )
