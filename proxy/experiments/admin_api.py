"""Experiments in the admin API: `GET /api/experiments`, `POST /api/experiments`,
`GET /api/experiments/<name>`, `POST /api/experiments/<name>/start|stop|promote`.

An experiment changes what a prompt or model request gets, as moving a prompt label does, so it takes
the same tenant-wide permissions: `prompts:read` to look, `prompts:manage` to change. A promote that
moves a label obeys the registry's approval rule.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from analytics.access import AccessDenied, Actor, Permission
from proxy.errors import access_error
from proxy.experiments.store import ExperimentStore, describe
from proxy.identity.directory import Change, IdentityError
from proxy.identity.guard import actor_label, client_ip, deny, requires
from proxy.jsonbody import NotJson, parse_json

bp = Blueprint("experiments_api", __name__, url_prefix="/api")


def _store() -> ExperimentStore:
    store: ExperimentStore = current_app.extensions["warden"].experiments
    return store


def _actor() -> Actor:
    actor: Actor = g.warden_actor
    return actor


@bp.errorhandler(IdentityError)
def _identity_error(exc: IdentityError) -> Response:
    codes = {404: "not_found", 403: "approval_refused", 409: "conflict"}
    return access_error(exc.status, str(exc), codes.get(exc.status, "invalid"))


@bp.errorhandler(AccessDenied)
def _denied(exc: AccessDenied) -> Response:
    deny(_actor(), exc.permission.value)
    return access_error(403, str(exc), "permission_denied")


def _body() -> dict[str, Any]:
    raw = request.get_data()
    if not raw.strip():
        return {}
    try:
        payload = parse_json(raw)
    except NotJson as exc:
        raise IdentityError(f"send a JSON object body (this one is not JSON: {exc})") from None
    if not isinstance(payload, dict):
        raise IdentityError("send a JSON object body")
    return payload


def _change() -> Change:
    actor = _actor()
    return Change(actor=actor_label(actor), tenant=actor.tenant, ip=client_ip())


@bp.get("/experiments")
@requires(Permission.PROMPTS_READ)
def list_experiments() -> Response:
    return jsonify({"experiments": [describe(e) for e in _store().experiments(_actor().tenant)]})


@bp.post("/experiments")
@requires(Permission.PROMPTS_MANAGE)
def create() -> Response:
    body = _body()
    name = body.get("name")
    if not isinstance(name, str):
        raise IdentityError("field 'name' must name the experiment")
    response = jsonify(describe(_store().create(_actor().tenant, name, body, _change())))
    response.status_code = 201
    return response


@bp.get("/experiments/<name>")
@requires(Permission.PROMPTS_READ)
def show(name: str) -> Response:
    return jsonify(describe(_store().get(_actor().tenant, name)))


@bp.post("/experiments/<name>/start")
@requires(Permission.PROMPTS_MANAGE)
def start(name: str) -> Response:
    return jsonify(describe(_store().start(_actor().tenant, name, _change())))


@bp.post("/experiments/<name>/stop")
@requires(Permission.PROMPTS_MANAGE)
def stop(name: str) -> Response:
    return jsonify(describe(_store().stop(_actor().tenant, name, _change())))


@bp.post("/experiments/<name>/promote")
@requires(Permission.PROMPTS_MANAGE)
def promote(name: str) -> Response:
    body = _body()
    variant = body.get("variant")
    if not isinstance(variant, str):
        raise IdentityError("field 'variant' must name the variant to promote")
    label = body.get("label", "production")
    if not isinstance(label, str):
        raise IdentityError("field 'label' must be a label name")
    return jsonify(describe(_store().promote(_actor().tenant, name, variant, _change(), label)))
