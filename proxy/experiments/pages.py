"""The experiments dashboard's buttons: `POST /experiments/<name>/promote` and
`POST /experiments/<name>/retire`, form posts.

The same store calls as `POST /api/experiments/<name>/promote|retire` (`prompts:manage`, the approval
rule for a prompt's label, the audit log); a form carries the session's CSRF token, which the guard
checks. Success goes back to the dashboard; a refusal answers in the JSON error shape with its reason.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, request
from werkzeug.wrappers import Response as BaseResponse

from analytics.access import Actor, Permission
from proxy.errors import access_error
from proxy.identity.api_views import change
from proxy.identity.directory import IdentityError
from proxy.identity.guard import requires

bp = Blueprint("experiment_pages", __name__)


@bp.post("/experiments/<name>/promote")
@requires(Permission.PROMPTS_MANAGE)
def promote(name: str) -> Any:
    actor: Actor = g.warden_actor
    variant = request.form.get("variant", "")
    label = request.form.get("label", "") or "production"
    try:
        if not variant:
            raise IdentityError("choose the variant to promote (form field 'variant')")
        experiments = current_app.extensions["warden"].experiments
        experiments.promote(actor.tenant, name, variant, change(), label)
    except IdentityError as exc:
        return _refused(exc)
    return _back()


@bp.post("/experiments/<name>/retire")
@requires(Permission.PROMPTS_MANAGE)
def retire(name: str) -> Any:
    actor: Actor = g.warden_actor
    try:
        current_app.extensions["warden"].experiments.retire(actor.tenant, name, change())
    except IdentityError as exc:
        return _refused(exc)
    return _back()


def _refused(exc: IdentityError) -> Any:
    return access_error(exc.status, str(exc), "not_found" if exc.status == 404 else "invalid")


def _back() -> BaseResponse:
    return BaseResponse(status=303, headers={"location": "/dashboards/experiments"})
