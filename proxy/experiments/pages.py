"""The experiments dashboard's promote button: `POST /experiments/<name>/promote`, a form post.

The same store call as `POST /api/experiments/<name>/promote` (`prompts:manage`, the approval rule for a
prompt's label, the audit log); a form carries the session's CSRF token, which the guard checks. Success
goes back to the dashboard; a refusal answers in the JSON error shape with its reason.
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
        return access_error(exc.status, str(exc), "not_found" if exc.status == 404 else "invalid")
    return BaseResponse(status=303, headers={"location": "/dashboards/experiments"})
