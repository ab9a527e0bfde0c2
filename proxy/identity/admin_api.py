"""The admin API (`/api/...`, JSON): users, teams, role bindings, API keys and the audit log.

Authenticated by a browser session (state changes need the `X-CSRF-Token` header) or the admin token.
Each view declares its permission; views that touch one team narrow the check to that team, and
listings show only what the caller's scope covers. Objects of other tenants answer 404.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request, send_file

from analytics.access import Actor, Binding, Permission, Scope, allows, can_grant, require, scope_for
from analytics.queries import FilterError, parse_time
from proxy.compliance.erasure import erase
from proxy.compliance.export_jobs import read_status
from proxy.compliance.exports import (
    ExportError,
    ExportSpec,
    Progress,
    expired,
    export,
    signing_key,
    sweep,
)
from proxy.db import utcnow
from proxy.errors import access_error
from proxy.identity import audit
from proxy.identity.directory import Change, IdentityError, UserInfo
from proxy.identity.guard import SIGNED_IN, actor_label, client_ip, deny, requires
from proxy.identity.keys import KeyInfo
from proxy.jsonbody import NotJson, parse_json

bp = Blueprint("admin_api", __name__, url_prefix="/api")


class BadInput(ValueError):
    pass


def _services() -> Any:
    return current_app.extensions["warden"]


def _actor() -> Actor:
    actor: Actor = g.warden_actor
    return actor


def _change() -> Change:
    actor = _actor()
    return Change(actor=actor_label(actor), tenant=actor.tenant, ip=client_ip())


def _body() -> dict[str, Any]:
    try:
        payload = parse_json(request.get_data())
    except NotJson as exc:
        raise BadInput(f"send a JSON object body (this one is not JSON: {exc})") from None
    if not isinstance(payload, dict):
        raise BadInput("send a JSON object body")
    return payload


def _field(payload: dict[str, Any], name: str, *, required: bool = True) -> Any:
    value = payload.get(name)
    if value is None and required:
        raise BadInput(f"missing field {name!r}")
    if value is not None and not isinstance(value, str):
        raise BadInput(f"field {name!r} must be a string")
    return value


def _user_json(user: UserInfo) -> dict[str, Any]:
    return {
        "username": user.username,
        "tenant": user.tenant,
        "disabled": user.disabled,
        "created_at": user.created_at.isoformat(),
        "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
        "roles": [{"role": b.role, "team": b.team} for b in user.bindings],
    }


def _key_json(key: KeyInfo) -> dict[str, Any]:
    return {
        "id": key.id,
        "prefix": key.prefix,
        "name": key.name,
        "team": key.team,
        "project": key.project,
        "models": list(key.models) if key.models is not None else None,
        "created_at": key.created_at.isoformat(),
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        "cache": key.cache,
    }


@bp.errorhandler(BadInput)
def _bad_input(exc: BadInput) -> Response:
    return access_error(400, str(exc), "bad_request")


@bp.errorhandler(IdentityError)
def _identity_error(exc: IdentityError) -> Response:
    return access_error(exc.status, str(exc), "not_found" if exc.status == 404 else "invalid")


# -- who am I ----------------------------------------------------------------------------------


@bp.get("/me")
@requires(SIGNED_IN)
def me() -> Response:
    actor = _actor()
    held = sorted(p.value for p in Permission if scope_for(actor, p) is not None)
    return jsonify(
        {
            "username": actor.username,
            "tenant": actor.tenant,
            "via": actor.via,
            "roles": [{"role": b.role, "team": b.team} for b in actor.bindings],
            "permissions": held,
            "csrf_token": g.get("warden_csrf"),
        }
    )


# -- teams -------------------------------------------------------------------------------------


@bp.get("/teams")
@requires(Permission.TEAMS_READ)
def list_teams() -> Response:
    actor = _actor()
    scope = scope_for(actor, Permission.TEAMS_READ)
    assert scope is not None
    teams = [t for t in _services().directory.teams(actor.tenant) if scope.covers(t)]
    return jsonify({"teams": teams})


@bp.post("/teams")
@requires(Permission.TEAMS_MANAGE)
def create_team() -> tuple[Response, int]:
    name = _field(_body(), "name")
    require(_actor(), Permission.TEAMS_MANAGE)
    _services().directory.create_team(name, _change())
    return jsonify({"name": name}), 201


# -- users -------------------------------------------------------------------------------------


@bp.get("/users")
@requires(Permission.USERS_READ)
def list_users() -> Response:
    actor = _actor()
    require(actor, Permission.USERS_READ)
    return jsonify({"users": [_user_json(u) for u in _services().directory.users(actor.tenant)]})


@bp.post("/users")
@requires(Permission.USERS_MANAGE)
def create_user() -> tuple[Response, int]:
    actor = _actor()
    require(actor, Permission.USERS_MANAGE)
    payload = _body()
    username, password = _field(payload, "username"), _field(payload, "password")
    role, team = _field(payload, "role", required=False), _field(payload, "team", required=False)
    bindings: tuple[Binding, ...] = ()
    if role is not None:
        _check_grant(actor, role, team)
        bindings = (Binding(role, team),)
    user = _services().directory.create_user(username, password, _change(), bindings)
    return jsonify(_user_json(user)), 201


@bp.post("/users/<username>/disable")
@requires(Permission.USERS_MANAGE)
def disable_user(username: str) -> Response:
    actor = _actor()
    require(actor, Permission.USERS_MANAGE)
    if username == actor.username:
        raise BadInput("you cannot disable yourself")
    return jsonify(_user_json(_services().directory.set_disabled(username, True, _change())))


@bp.post("/users/<username>/enable")
@requires(Permission.USERS_MANAGE)
def enable_user(username: str) -> Response:
    require(_actor(), Permission.USERS_MANAGE)
    return jsonify(_user_json(_services().directory.set_disabled(username, False, _change())))


@bp.post("/users/<username>/roles")
@requires(Permission.ROLES_MANAGE)
def grant_role(username: str) -> Response:
    payload = _body()
    role, team = _field(payload, "role"), _field(payload, "team", required=False)
    _check_grant(_actor(), role, team)
    return jsonify(_user_json(_services().directory.grant(username, Binding(role, team), _change())))


@bp.delete("/users/<username>/roles")
@requires(Permission.ROLES_MANAGE)
def revoke_role(username: str) -> Response:
    payload = _body()
    role, team = _field(payload, "role"), _field(payload, "team", required=False)
    _check_grant(_actor(), role, team)
    return jsonify(_user_json(_services().directory.revoke(username, Binding(role, team), _change())))


def _check_grant(actor: Actor, role: str, team: str | None) -> None:
    if not can_grant(actor, role, team):
        deny(actor, f"grant {role} in {team or 'tenant'}")
        raise IdentityError(f"you may not grant or revoke {role!r} in {team or 'the whole tenant'}", 403)


# -- API keys ----------------------------------------------------------------------------------


def _visible_keys(permission: Permission) -> list[KeyInfo]:
    actor = _actor()
    scope = scope_for(actor, permission)
    if scope is None:
        return []
    return [k for k in _services().keys.list() if k.tenant == actor.tenant and scope.covers(k.team)]


@bp.get("/keys")
@requires(Permission.KEYS_READ)
def list_keys() -> Response:
    return jsonify({"keys": [_key_json(k) for k in _visible_keys(Permission.KEYS_READ)]})


@bp.post("/keys")
@requires(Permission.KEYS_MANAGE)
def create_key() -> tuple[Response, int]:
    actor = _actor()
    payload = _body()
    team = _field(payload, "team")
    require(actor, Permission.KEYS_MANAGE, team)
    models = payload.get("models")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) for m in models)):
        raise BadInput("field 'models' must be a list of strings")
    days = payload.get("expires_in_days")
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650):
        raise BadInput("field 'expires_in_days' must be an integer from 1 to 3650")
    cache = payload.get("cache")
    if cache is not None and not isinstance(cache, bool):
        raise BadInput("field 'cache' must be true, false or null (follow the policy)")
    info, plaintext = _services().keys.create(
        team,
        name=_field(payload, "name", required=False) or "default",
        project=_field(payload, "project", required=False) or "",
        models=models,
        expires_at=utcnow() + timedelta(days=days) if days else None,
        tenant=actor.tenant,
        change=_change(),
        create_team=False,
        owner_user_id=actor.user_id if actor.via == "session" else None,
        cache=cache,
    )
    return jsonify({**_key_json(info), "key": plaintext}), 201


@bp.delete("/keys/<key_id>")
@requires(Permission.KEYS_MANAGE)
def revoke_key(key_id: str) -> Response:
    actor = _actor()
    key = _services().keys.get(key_id)
    if key is None or key.tenant != actor.tenant:
        raise IdentityError(f"no key {key_id!r}", 404)
    require(actor, Permission.KEYS_MANAGE, key.team)
    _services().keys.revoke(key_id, _change())
    return jsonify(_key_json(_services().keys.get(key_id)))


# -- audit log ---------------------------------------------------------------------------------


@bp.get("/audit")
@requires(Permission.AUDIT_READ)
def audit_entries() -> Response:
    actor = _actor()
    require(actor, Permission.AUDIT_READ)
    try:
        limit = min(max(int(request.args.get("limit", 100)), 1), 1000)
        before = int(request.args["before"]) if "before" in request.args else None
    except ValueError:
        raise BadInput("limit and before must be integers") from None
    if before is not None and not 0 <= before < 2**63:  # the database's integers are 64-bit
        raise BadInput("before must be a sequence number (0 to 2^63 - 1)")
    rows = audit.entries(_services().db, tenant=actor.tenant, limit=limit, before_seq=before)
    return jsonify(
        {
            "entries": [
                {
                    "seq": r.seq,
                    "at": r.at.isoformat(),
                    "actor": r.actor,
                    "action": r.action,
                    "target": r.target,
                    "outcome": r.outcome,
                    "ip": r.ip,
                    "before": r.before,
                    "after": r.after,
                }
                for r in rows
            ]
        }
    )


@bp.get("/audit/verify")
@requires(Permission.AUDIT_READ)
def audit_verify() -> Response:
    actor = _actor()
    require(actor, Permission.AUDIT_READ)
    report = audit.verify(_services().db, tenant=actor.tenant)
    return jsonify({"ok": report.ok, "rows": report.rows, "problem": report.problem, "seq": report.seq})


# -- erasure and exports -----------------------------------------------------------------------


@bp.post("/erasure")
@requires(Permission.DATA_ERASE)
def erasure() -> Response:
    actor = _actor()
    require(actor, Permission.DATA_ERASE)
    payload = _body()
    subject = _field(payload, "subject", required=False)
    whole = payload.get("all_of_tenant") is True
    if bool(subject) == whole:
        raise BadInput("give exactly one of 'subject' or 'all_of_tenant': true")
    services = _services()
    report = erase(
        services.keyring,
        services.clickhouse(),
        services.db,
        tenant=actor.tenant,
        subject=subject,
        actor=actor_label(actor),
        ip=client_ip(),
        exports_dir=Path(services.settings.exports.dir),
    )
    return jsonify(
        {
            "keys_destroyed": report.keys_destroyed,
            "requests_deleted": report.requests_deleted,
            "transcripts_deleted": report.transcripts_deleted,
            "exports_deleted": report.exports_deleted,
        }
    )


@bp.post("/exports")
@requires(Permission.EXPORTS_CREATE)
def create_export() -> tuple[Response, int]:
    actor = _actor()
    payload = _body()
    teams = payload.get("teams")
    if teams is not None and (
        not isinstance(teams, list) or not teams or not all(isinstance(t, str) for t in teams)
    ):
        raise BadInput("field 'teams' must be a non-empty list of team names")
    for team in teams or [None]:
        require(actor, Permission.EXPORTS_CREATE, team)
    with_transcripts = payload.get("transcripts") is True
    reason = _field(payload, "reason", required=False) or ""
    if with_transcripts:
        for team in teams or [None]:
            require(actor, Permission.TRANSCRIPTS_READ, team)
        if len(reason.strip()) < 8:
            raise BadInput("exporting transcripts needs a 'reason' of at least 8 characters")
    try:
        since = parse_time(_field(payload, "since"), "since", assume_utc=False)
        until = parse_time(_field(payload, "until"), "until", assume_utc=False)
    except FilterError as exc:
        raise BadInput(str(exc)) from None
    services = _services()
    export_id = "exp_" + uuid.uuid4().hex[:16]
    spec = ExportSpec(
        actor.tenant,
        since,
        until,
        _field(payload, "format", required=False) or "jsonl",
        Scope(actor.tenant, frozenset(teams)) if teams else None,
        with_transcripts,
        audit_log=allows(actor, Permission.AUDIT_READ),
    )
    background = payload.get("background", False)
    if not isinstance(background, bool):
        raise BadInput("field 'background' must be true or false")
    exports_dir = Path(services.settings.exports.dir)
    # Old exports go as new ones come: no scheduler needed for `exports.keep_days`.
    sweep(exports_dir, keep=timedelta(days=services.settings.exports.keep_days))
    out = exports_dir / export_id
    try:
        spec.check()
        key = signing_key(Path(services.settings.exports.signing_key))
    except ExportError as exc:
        raise BadInput(str(exc)) from None
    label, ip = actor_label(actor), client_ip()

    def run(progress: Progress) -> dict[str, Any]:
        return export(
            spec,
            out,
            clickhouse=services.clickhouse(),
            db=services.db,
            keyring=services.keyring,
            key=key,
            actor=label,
            ip=ip,
            reason=reason,
            progress=progress,
        )

    if background:
        # A large export would hold a serving thread for minutes: it runs in the export pool instead.
        status = services.exports.start(export_id, actor.tenant, teams, run)
        return jsonify({**status, "status_url": f"/api/exports/{export_id}"}), 202
    try:
        manifest = run(lambda _name, _rows: None)
    except ExportError as exc:
        raise BadInput(str(exc)) from None
    except OSError:
        if out.exists():
            raise
        # An erasure of the tenant deletes its exports, this one too while it is being written.
        raise IdentityError("an erasure deleted this export while it was being written", 409) from None
    return jsonify(manifest), 201


@bp.get("/exports/<export_id>")
@requires(Permission.EXPORTS_CREATE)
def export_status(export_id: str) -> Response:
    """A background export's progress (rows written per file) and outcome; other tenants' are 404."""
    status = None
    if re.fullmatch(r"exp_[0-9a-f]{16}", export_id):
        status = read_status(Path(_services().settings.exports.dir), export_id)
    actor = _actor()
    if status is None or status.get("tenant") != actor.tenant:
        raise IdentityError("no such export", 404)
    for team in status.get("teams") or [None]:
        require(actor, Permission.EXPORTS_CREATE, team)
    return jsonify(status)


@bp.get("/exports/<export_id>/<name>")
@requires(Permission.EXPORTS_CREATE)
def download_export(export_id: str, name: str) -> Response:
    if not re.fullmatch(r"exp_[0-9a-f]{16}", export_id) or not re.fullmatch(r"[a-z_]+\.[a-z]+", name):
        raise IdentityError("no such export file", 404)
    directory = Path(_services().settings.exports.dir) / export_id
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except OSError:
        raise IdentityError("no such export", 404) from None
    actor = _actor()
    if manifest.get("tenant") != actor.tenant:
        raise IdentityError("no such export", 404)
    for team in manifest.get("teams") or [None]:
        require(actor, Permission.EXPORTS_CREATE, team)
    if manifest.get("files") and any(
        f["name"] == "transcripts." + manifest["format"] for f in manifest["files"]
    ):
        for team in manifest.get("teams") or [None]:
            require(actor, Permission.TRANSCRIPTS_READ, team)
    if name.startswith("audit_log."):
        # Exports made before the audit log needed tenant-wide `audit:read` may still hold one.
        require(actor, Permission.AUDIT_READ)
    settings = _services().settings.exports
    if expired(directory, timedelta(days=settings.keep_days)):
        sweep(Path(settings.dir), keep=timedelta(days=settings.keep_days))
        raise IdentityError("this export has expired and was deleted; make a new one", 404)
    path = directory / name
    if not path.is_file():
        raise IdentityError("no such export file", 404)
    # A download hands out decrypted data again: who took which file, and from where, is on record.
    audit.record(
        _services().db,
        tenant=actor.tenant,
        actor=actor_label(actor),
        action="export.download",
        target=f"export:{export_id}/{name}",
        ip=client_ip(),
    )
    return send_file(path, as_attachment=True, download_name=f"{export_id}-{name}")
