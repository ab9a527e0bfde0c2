"""`POST /v1/warden/feedback`: a score and/or a label on one request, with an optional comment.

Callers: an API key scores its own tenant's requests; a person needs `feedback:write` in the request's
team (or tenant-wide). A request that is unknown, of another tenant, or of a team the person may not
score is answered 404, the same answer in every case, so ids cannot be probed. The comment is sealed
under the request's subject key (the tenant's when none), as transcripts are: erasing the subject
shreds it too. Rows are written straight to ClickHouse, not through the spool: the caller learns at
once whether the feedback was kept (503 when ClickHouse is down, and it may retry).

A request's own row lands within the sink's flush interval; on a miss the view waits for the sink to
flush (at most `FLUSH_WAIT_S`) and looks once more, so a client scoring right after its answer succeeds.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from analytics import feedback
from analytics.access import Actor, Permission, allows, held_anywhere
from proxy.errors import ProxyError, bad_request, error_response
from proxy.identity.guard import actor_label, csrf_ok, deny
from proxy.identity.keys import Principal
from proxy.jsonbody import NotJson, parse_json

log = logging.getLogger(__name__)
bp = Blueprint("feedback", __name__)

SCORE_LIMIT = 1e6
MAX_COMMENT = 10_000
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
FIELDS = frozenset({"request_id", "score", "label", "comment", "source"})
FLUSH_WAIT_S = 1.0


def _fail(status: int, message: str, code: str, param: str | None = None) -> Response:
    return error_response(ProxyError(status, message, code=code, param=param))


def record() -> Response:
    """Store one feedback; answers 201 with its id."""
    services = current_app.extensions["warden"]
    actor: Actor | None = g.get("warden_actor")
    principal: Principal | None = None
    if actor is None:
        try:
            principal = services.forwarder.authenticate(request)
        except ProxyError as exc:
            return error_response(exc)
        tenant, who = principal.tenant, f"key:{principal.key_id}"
    else:
        tenant, who = actor.tenant, actor_label(actor)
        if not held_anywhere(actor, Permission.FEEDBACK_WRITE):
            deny(actor, Permission.FEEDBACK_WRITE.value)
            return _fail(403, "permission 'feedback:write' is required", "permission_denied")
        if actor.via == "session" and not csrf_ok():
            deny(actor, "csrf")
            return _fail(403, "missing or invalid CSRF token", "csrf_failed")
    try:
        parsed = _parse(request.get_data(), "end_user" if principal is not None else "reviewer")
    except ProxyError as exc:
        return error_response(exc)
    request_id, score, label, comment, source = parsed
    try:
        client = services.clickhouse()
        scored = feedback.scored_request(client, tenant, request_id)
        if scored is None and services.sink.flush(FLUSH_WAIT_S):
            scored = feedback.scored_request(client, tenant, request_id)
    except Exception:
        log.exception("could not look up request %s for feedback", request_id)
        return _unavailable()
    if scored is None or (actor is not None and not allows(actor, Permission.FEEDBACK_WRITE, scored.team)):
        return _fail(404, f"no request {request_id} to give feedback on", "not_found", "request_id")
    feedback_id, ts = uuid.uuid4(), datetime.now(UTC)
    key_id, nonce, ciphertext = "", b"", b""
    if comment:
        sealed = services.keyring.seal(
            tenant,
            scored.subject_hash,
            feedback_id,
            ts,
            {"comment": comment},
            caller=principal.key_id if principal is not None else "",
        )
        key_id, nonce, ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
    row = feedback.FeedbackRow(
        tenant=tenant,
        team=scored.team,
        feedback_id=feedback_id,
        request_id=request_id,
        ts=ts,
        score=score,
        label=label,
        source=source,
        actor=who,
        subject_hash=scored.subject_hash,
        key_id=key_id,
        nonce=nonce,
        ciphertext=ciphertext,
        retention_days=scored.retention_days,
    )
    try:
        feedback.insert(client, row)
    except Exception:
        log.exception("could not store feedback on request %s", request_id)
        return _unavailable()
    response = jsonify(
        {
            "id": str(feedback_id),
            "object": "warden.feedback",
            "request_id": str(request_id),
            "score": score,
            "label": label,
            "source": source,
            "comment": bool(comment),
            "created_at": int(ts.timestamp()),
        }
    )
    response.status_code = 201
    return response


def _unavailable() -> Response:
    return error_response(
        ProxyError(
            503,
            "feedback cannot be stored right now (analytics storage is unavailable); retry later",
            type="server_error",
            code="storage_unavailable",
        )
    )


def _parse(raw: bytes, default_source: str) -> tuple[uuid.UUID, float | None, str, str, str]:
    try:
        body: Any = parse_json(raw)
    except NotJson as exc:
        raise bad_request(f"send a JSON object with 'request_id' (this body is not JSON: {exc})") from None
    if not isinstance(body, dict):
        raise bad_request("send a JSON object with 'request_id' and a 'score' or a 'label'")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise bad_request(f"unknown field {unknown[0]!r}", param=unknown[0])
    try:
        request_id = uuid.UUID(str(body.get("request_id")))
    except ValueError:
        raise bad_request("'request_id' must be a request's id (a UUID)", param="request_id") from None
    if not isinstance(body.get("request_id"), str):
        raise bad_request("'request_id' must be a request's id (a UUID)", param="request_id")
    score = body.get("score")
    # JSON has no NaN, but Python's parser reads NaN and Infinity: refuse them, and bools (ints in Python).
    if score is not None and (
        isinstance(score, bool)
        or not isinstance(score, int | float)
        or not math.isfinite(score)
        or abs(score) > SCORE_LIMIT
    ):
        limits = f"-{SCORE_LIMIT:g} to {SCORE_LIMIT:g}"
        raise bad_request(f"'score' must be a finite number from {limits}", "score")
    label = body.get("label", "")
    if label is None:
        label = ""
    if not isinstance(label, str) or (label and LABEL.fullmatch(label) is None):
        raise bad_request(
            "'label' must be up to 64 letters, digits or _ . : - (starting with a letter or digit)", "label"
        )
    if score is None and not label:
        raise bad_request("send a 'score', a 'label' or both", "score")
    comment = body.get("comment", "")
    if comment is None:
        comment = ""
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise bad_request(f"'comment' must be a string of at most {MAX_COMMENT} characters", "comment")
    source = body.get("source", default_source)
    if source not in feedback.SOURCES:
        raise bad_request(f"'source' must be one of {', '.join(feedback.SOURCES)}", "source")
    if source == "reviewer" and default_source != "reviewer":
        # A reviewer is a person the dashboards count apart; an application cannot speak for one.
        raise bad_request(
            "'source' reviewer is for people signed in; an API key sends end_user or evaluator", "source"
        )
    return request_id, None if score is None else float(score), label, comment, str(source)


# An API key of the tenant, or a person holding `feedback:write` (the guard cannot say both).
record.warden_permission = Permission.FEEDBACK_WRITE.value  # type: ignore[attr-defined]
bp.add_url_rule("/v1/warden/feedback", view_func=record, methods=["POST"])
