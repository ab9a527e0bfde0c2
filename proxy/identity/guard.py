"""The web choke point: who is asking (session cookie or admin token), and may they.

Every view declares what it needs with `requires(permission)` or one of the markers (`public`,
`api_key`, `signed_in`); a test walks the URL map and fails on any view without a declaration.
State-changing requests from a browser session must carry the session's CSRF token.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, Response, g, redirect, request, url_for

from analytics.access import AccessDenied, Actor, Binding, Permission, held_anywhere
from proxy.errors import access_error
from proxy.formats import FORMATS
from proxy.identity import audit
from proxy.identity.directory import DEFAULT_TENANT, Directory
from proxy.identity.sessions import COOKIE, SessionStore

PUBLIC = "public"
API_KEY = "api_key"
SIGNED_IN = "signed_in"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The proxy's hot path never looks up people.
_SKIP_PREFIXES = (
    "/v1/",
    "/healthz",
    "/metrics",
    "/models",
    *(f"/{f.path}" for f in FORMATS.values()),
)

View = Callable[..., Any]


def declared(marker: str) -> Callable[[View], View]:
    def mark(view: View) -> View:
        view.warden_permission = marker  # type: ignore[attr-defined]
        return view

    return mark


def requires(permission: Permission | str, *, page: bool = False) -> Callable[[View], View]:
    """Let the view run only for a signed-in actor holding `permission` somewhere (views narrow it
    to a team with `analytics.access.require`); `signed_in` needs any actor."""

    def decorate(view: View) -> View:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            actor: Actor | None = g.get("warden_actor")
            if actor is None:
                if page:
                    return redirect(url_for("people.login", next=request.full_path.rstrip("?")))
                return access_error(401, "Sign in, or send an admin token.", "unauthenticated")
            if permission != SIGNED_IN and not held_anywhere(actor, Permission(permission)):
                deny(actor, str(permission))
                return access_error(403, f"permission {str(permission)!r} is required", "permission_denied")
            if request.method not in SAFE_METHODS and actor.via == "session" and not csrf_ok():
                deny(actor, "csrf")
                return access_error(403, "missing or invalid CSRF token", "csrf_failed")
            return view(*args, **kwargs)

        guarded.warden_permission = str(permission)  # type: ignore[attr-defined]
        return guarded

    return decorate


def csrf_ok() -> bool:
    expected = g.get("warden_csrf") or ""
    sent = request.headers.get("x-csrf-token") or request.form.get("csrf_token") or ""
    return bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


def client_ip() -> str:
    return (request.remote_addr or "")[:64]


def actor_label(actor: Actor) -> str:
    return f"{actor.via}:{actor.username}"


def deny(actor: Actor, what: str) -> None:
    """Record a refused attempt: the audit log shows who tried what, and from where."""
    services = request.environ["warden.services"]
    audit.record(
        services.db,
        tenant=actor.tenant,
        actor=actor_label(actor),
        action="denied",
        target=f"{request.method} {request.path} ({what})"[:256],
        outcome="denied",
        ip=client_ip(),
    )


def init_app(app: Flask, directory: Directory, sessions: SessionStore, admin_token: str | None) -> None:
    token_actor = Actor("admin-token", "admin-token", DEFAULT_TENANT, (Binding("admin"),), "token")

    @app.before_request
    def identify() -> None:
        path = request.path
        if path.startswith(_SKIP_PREFIXES) and not path.startswith("/v1/warden/"):
            return
        request.environ["warden.services"] = app.extensions["warden"]
        header = request.headers.get("authorization", "")
        if admin_token and header.lower().startswith("bearer "):
            if hmac.compare_digest(header[7:].strip().encode(), admin_token.encode()):
                g.warden_actor = token_actor
            return
        active = sessions.resolve(request.cookies.get(COOKIE, ""))
        if active is not None:
            g.warden_actor = directory.actor(active.user_id, "session")
            g.warden_csrf = active.csrf_token

    @app.errorhandler(AccessDenied)
    def access_denied(exc: AccessDenied) -> Response:
        actor = g.get("warden_actor")
        if actor is not None:
            deny(actor, f"{exc.permission.value} in {exc.team or 'tenant'}")
        return access_error(403, str(exc), "permission_denied")
