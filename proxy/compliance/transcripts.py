"""Reading transcripts: `transcripts:read` in the row's team, a stated reason, and an audit record
written before a single byte is decrypted."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from flask import Blueprint, Response, current_app, g, jsonify, render_template, request

from analytics.access import Permission, allows
from proxy.compliance.crypto import BINARY, CryptoError, Sealed
from proxy.errors import access_error
from proxy.identity import audit
from proxy.identity.guard import actor_label, client_ip, deny, requires
from proxy.jsonbody import NotJson, parse_json

bp = Blueprint("transcripts", __name__, template_folder="../templates")
MIN_REASON, MAX_REASON = 8, 500


class TranscriptUnavailable(Exception):
    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def read_transcript(request_id: str, reason: str) -> dict[str, Any]:
    """The decrypted transcript for the signed-in actor, after checks and the audit record."""
    services = current_app.extensions["warden"]
    actor = g.warden_actor
    try:
        rid = UUID(request_id)
    except ValueError:
        raise TranscriptUnavailable(400, "request_id must be a UUID", "bad_request") from None
    reason = (reason or "").strip()
    if not MIN_REASON <= len(reason) <= MAX_REASON:
        raise TranscriptUnavailable(
            400, f"give a reason of {MIN_REASON} to {MAX_REASON} characters", "reason_required"
        )
    rows = (
        services.clickhouse()
        .query(
            "SELECT team, ts, key_id, nonce, ciphertext FROM transcripts FINAL "
            "WHERE tenant = {tenant:String} AND request_id = {id:UUID} LIMIT 1",
            parameters={"tenant": actor.tenant, "id": rid},
            column_formats=BINARY,
        )
        .result_rows
    )
    if not rows:
        raise TranscriptUnavailable(
            404, "no transcript for this request (none stored, expired or erased)", "not_found"
        )
    team, ts, key_id, nonce, ciphertext = rows[0]
    if not allows(actor, Permission.TRANSCRIPTS_READ, team):
        deny(actor, f"transcripts:read in {team}")
        raise TranscriptUnavailable(
            403, f"permission 'transcripts:read' is required in team {team!r}", "permission_denied"
        )
    audit.record(
        services.db,
        tenant=actor.tenant,
        actor=actor_label(actor),
        action="transcript.read",
        target=f"request:{rid}",
        ip=client_ip(),
        after={"reason": reason, "team": team},
    )
    try:
        content = services.keyring.open(actor.tenant, rid, ts, Sealed(key_id, nonce, ciphertext))
    except CryptoError as exc:
        raise TranscriptUnavailable(410, str(exc), "transcript_unreadable") from None
    return {"request_id": str(rid), "team": team, "ts": ts.isoformat(), **content}


# Reading is a POST, so the guard asks a session for its CSRF token: a GET has side effects no link
# may trigger (a decryption and an audit record carrying whatever reason the link's author chose).
@bp.post("/api/transcripts/<request_id>")
@requires(Permission.TRANSCRIPTS_READ)
def transcript_api(request_id: str) -> Response:
    try:
        body = parse_json(request.get_data())
    except NotJson as exc:
        return access_error(
            400, f"send a JSON object with 'reason' (this body is not JSON: {exc})", "bad_request"
        )
    reason = body.get("reason") if isinstance(body, dict) else None
    if not isinstance(reason, str):
        return access_error(400, "send a JSON object with 'reason', a string", "reason_required")
    try:
        return jsonify(read_transcript(request_id, reason))
    except TranscriptUnavailable as exc:
        return access_error(exc.status, exc.message, exc.code)


@bp.route("/transcripts/<request_id>", methods=["GET", "POST"])
@requires(Permission.TRANSCRIPTS_READ, page=True)
def transcript_page(request_id: str) -> Any:
    """GET shows the form asking for a reason and reads nothing; the form's POST reads."""
    transcript, message, status = None, "", 200
    if request.method == "POST":
        try:
            transcript = read_transcript(request_id, request.form.get("reason", ""))
        except TranscriptUnavailable as exc:
            message, status = exc.message, exc.status
    html = render_template(
        "transcript.html",
        request_id=request_id,
        transcript=transcript,
        message=message,
        csrf_token=g.get("warden_csrf", ""),
    )
    return html, status
