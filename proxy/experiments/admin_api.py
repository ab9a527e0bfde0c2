"""Experiments in the admin API: `GET /api/experiments`, `POST /api/experiments`,
`GET /api/experiments/<name>`, `POST /api/experiments/<name>/start|stop|promote|retire`.

An experiment changes what a prompt or model request gets, as moving a prompt label does, so it takes
the same tenant-wide permissions: `prompts:read` to look, `prompts:manage` to change. A promote that
moves a label obeys the registry's approval rule; `retire` ends a promoted model experiment's route.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from analytics.access import Permission
from proxy.experiments.store import ExperimentStore, describe
from proxy.identity.api_views import answer_refusals, change, json_body, signed_in
from proxy.identity.directory import IdentityError
from proxy.identity.guard import requires

bp = Blueprint("experiments_api", __name__, url_prefix="/api")
answer_refusals(bp, {404: "not_found", 403: "approval_refused", 409: "conflict"})


def _store() -> ExperimentStore:
    store: ExperimentStore = current_app.extensions["warden"].experiments
    return store


@bp.get("/experiments")
@requires(Permission.PROMPTS_READ)
def list_experiments() -> Response:
    return jsonify({"experiments": [describe(e) for e in _store().experiments(signed_in().tenant)]})


@bp.post("/experiments")
@requires(Permission.PROMPTS_MANAGE)
def create() -> Response:
    body = json_body(empty_ok=True)
    name = body.get("name")
    if not isinstance(name, str):
        raise IdentityError("field 'name' must name the experiment")
    response = jsonify(describe(_store().create(signed_in().tenant, name, body, change())))
    response.status_code = 201
    return response


@bp.get("/experiments/<name>")
@requires(Permission.PROMPTS_READ)
def show(name: str) -> Response:
    return jsonify(describe(_store().get(signed_in().tenant, name)))


@bp.post("/experiments/<name>/start")
@requires(Permission.PROMPTS_MANAGE)
def start(name: str) -> Response:
    return jsonify(describe(_store().start(signed_in().tenant, name, change())))


@bp.post("/experiments/<name>/stop")
@requires(Permission.PROMPTS_MANAGE)
def stop(name: str) -> Response:
    return jsonify(describe(_store().stop(signed_in().tenant, name, change())))


@bp.post("/experiments/<name>/promote")
@requires(Permission.PROMPTS_MANAGE)
def promote(name: str) -> Response:
    body = json_body(empty_ok=True)
    variant = body.get("variant")
    if not isinstance(variant, str):
        raise IdentityError("field 'variant' must name the variant to promote")
    label = body.get("label", "production")
    if not isinstance(label, str):
        raise IdentityError("field 'label' must be a label name")
    return jsonify(describe(_store().promote(signed_in().tenant, name, variant, change(), label)))


@bp.post("/experiments/<name>/retire")
@requires(Permission.PROMPTS_MANAGE)
def retire(name: str) -> Response:
    return jsonify(describe(_store().retire(signed_in().tenant, name, change())))
