"""Pages to browse prompts, compare two versions and move a label: `/prompts` and `/prompts/<name>`.

The same store and rules as the admin API (`proxy/prompts/admin_api.py`): reading needs `prompts:read`,
moving a label `prompts:manage` (with the session's CSRF token, checked by the guard) and obeys the
approval rule; a refused move is shown on the page with the reason, never a server error.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, redirect, render_template, request
from werkzeug.wrappers import Response as BaseResponse

from analytics.access import Actor, Permission, allows
from proxy.identity.api_views import change
from proxy.identity.directory import IdentityError
from proxy.identity.guard import requires
from proxy.prompts.store import PromptStore

bp = Blueprint("prompt_pages", __name__, template_folder="../templates")


def _store() -> PromptStore:
    store: PromptStore = current_app.extensions["warden"].prompts
    return store


def _actor() -> Actor:
    actor: Actor = g.warden_actor
    return actor


@bp.get("/prompts")
@requires(Permission.PROMPTS_READ, page=True)
def prompts() -> str:
    return render_template("prompts.html", summaries=_store().summaries(_actor().tenant))


def _number(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() and int(value) > 0 else None


def _page(name: str, message: str = "", status: int = 200) -> tuple[str, int]:
    actor = _actor()
    versions = _store().versions(actor.tenant, name)  # IdentityError 404 names an unknown prompt
    numbers = [v.number for v in versions]
    old, new = _number(request.args.get("from")), _number(request.args.get("to"))
    diff = ""
    if old in numbers and new in numbers and old is not None and new is not None:
        diff = _store().diff(actor.tenant, name, old, new)
    elif request.args.get("from") or request.args.get("to"):
        message = message or f"choose two versions of {name!r} (1 to {max(numbers)})"
    context: dict[str, Any] = {
        "name": name,
        "versions": sorted(versions, key=lambda v: -v.number),
        "diff": diff,
        "old": old,
        "new": new,
        "message": message,
        "can_manage": allows(actor, Permission.PROMPTS_MANAGE),
        "csrf_token": g.get("warden_csrf", ""),
    }
    return render_template("prompt.html", **context), status


@bp.get("/prompts/<name>")
@requires(Permission.PROMPTS_READ, page=True)
def prompt(name: str) -> tuple[str, int]:
    try:
        return _page(name)
    except IdentityError as exc:
        return render_template("prompts.html", summaries=[], message=str(exc)), exc.status


@bp.post("/prompts/<name>/label")
@requires(Permission.PROMPTS_MANAGE, page=True)
def move_label(name: str) -> BaseResponse | tuple[str, int]:
    actor = _actor()
    number = _number(request.form.get("version"))
    try:
        if number is None:
            raise IdentityError("choose a version number (1, 2, ...)")
        _store().set_label(actor.tenant, name, request.form.get("label", ""), number, change())
    except IdentityError as exc:
        try:
            return _page(name, str(exc), exc.status)
        except IdentityError as missing:
            return render_template("prompts.html", summaries=[], message=str(missing)), missing.status
    return redirect(f"/prompts/{name}", 303)
