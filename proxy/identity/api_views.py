"""What the admin API blueprints share: the signed-in actor, a JSON object body, the `Change` an audited
write records, and the error handlers that turn refusals into the JSON error shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, g, request

from analytics.access import AccessDenied, Actor
from proxy.errors import access_error
from proxy.identity.directory import Change, IdentityError
from proxy.identity.guard import actor_label, client_ip, deny
from proxy.jsonbody import NotJson, parse_json


def signed_in() -> Actor:
    found: Actor = g.warden_actor
    return found


def json_body(*, empty_ok: bool = False) -> dict[str, Any]:
    """The request's JSON object; with `empty_ok`, an empty body is `{}`."""
    raw = request.get_data()
    if empty_ok and not raw.strip():
        return {}
    try:
        payload = parse_json(raw)
    except NotJson as exc:
        raise IdentityError(f"send a JSON object body (this one is not JSON: {exc})") from None
    if not isinstance(payload, dict):
        raise IdentityError("send a JSON object body")
    return payload


def change() -> Change:
    who = signed_in()
    return Change(actor=actor_label(who), tenant=who.tenant, ip=client_ip())


def answer_refusals(bp: Blueprint, codes: Mapping[int, str]) -> None:
    """IdentityError -> its status with `codes[status]` (else "invalid"); AccessDenied -> an audited 403."""

    @bp.errorhandler(IdentityError)
    def _identity_error(exc: IdentityError) -> Response:
        return access_error(exc.status, str(exc), codes.get(exc.status, "invalid"))

    @bp.errorhandler(AccessDenied)
    def _denied(exc: AccessDenied) -> Response:
        deny(signed_in(), exc.permission.value)
        return access_error(403, str(exc), "permission_denied")
