"""Pages for people: sign in, sign out, and a home page that says who you are."""

from __future__ import annotations

import hmac
import secrets
import unicodedata
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, make_response, redirect, render_template, request
from werkzeug.wrappers import Response as BaseResponse

from analytics.access import Permission
from proxy.identity import audit
from proxy.identity.directory import sign_in_name
from proxy.identity.guard import PUBLIC, SIGNED_IN, client_ip, declared, requires
from proxy.identity.sessions import COOKIE, LOGIN_CSRF_COOKIE

bp = Blueprint("people", __name__, template_folder="../templates")


def _services() -> Any:
    return current_app.extensions["warden"]


def _secure() -> bool:
    mode = _services().settings.auth.cookie_secure
    return mode == "always" or (mode == "auto" and request.is_secure)


def _safe_next(target: str | None) -> str:
    """A path on this site to go to after signing in, or "/": an open redirect is a phishing tool.

    Control and space characters go first: browsers and Werkzeug drop tabs and newlines, so
    "/\t/evil.example" would become the protocol-relative "//evil.example" after the check.
    """
    cleaned = "".join(ch for ch in target or "" if not (ch.isspace() or unicodedata.category(ch)[0] == "C"))
    parts = urlsplit(cleaned)
    if (
        cleaned.startswith("/")
        and not cleaned.startswith("//")
        and "\\" not in cleaned
        and not parts.scheme
        and not parts.netloc
    ):
        return cleaned
    return "/"


def _login_form(message: str = "", status: int = 200, username: str = "") -> Response:
    token = secrets.token_urlsafe(32)
    html = render_template(
        "login.html",
        csrf_token=token,
        message=message,
        username=username,
        next=_safe_next(request.values.get("next")),
    )
    response = make_response(html, status)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=_secure(),
        max_age=3600,
        path="/login",
    )
    response.headers["cache-control"] = "no-store"
    return response


@bp.get("/login")
@declared(PUBLIC)
def login_form() -> Response:
    return _login_form()


def _refused(typed: str, reason: str) -> None:
    """Audit a refused sign-in; the reason is one word (csrf, throttled, password, rate_limited), never
    the password. In a flood only the first few refusals of each kind and address a minute are written
    one by one; the rest become one record with their count once the minute is over.

    A refusal naming an account goes to that account's tenant's log; one naming no account, and a flood
    from an address, to the installation's system log: no tenant reads about another's people. Both run
    the same lookup and write one row, so the answer does not say which it was."""
    services = _services()
    ip = client_ip()
    now, closed = services.login_gate.refusal(ip, reason)
    for address, why, count in closed:
        audit.record(
            services.db,
            tenant=audit.SYSTEM,
            actor="anonymous",
            action="login.flood",
            target=f"address:{address}",
            outcome="denied",
            ip=address,
            after={"reason": why, "refused": count},
        )
    if now:
        username, tenant = sign_in_name(typed)
        known = services.directory.exists(username, tenant)
        label = username if known else typed
        audit.record(
            services.db,
            tenant=tenant if known else audit.SYSTEM,
            actor=f"anonymous:{label}",
            action="login",
            target=f"user:{label}",
            outcome="denied",
            ip=ip,
            after={"reason": reason},
        )


@bp.post("/login")
@declared(PUBLIC)
def login() -> BaseResponse:
    services = _services()
    # name@tenant: 128 characters each at most.
    typed = (request.form.get("username") or "").strip()[:257]
    username, tenant = sign_in_name(typed)
    account = f"{username}@{tenant}"  # one throttle per account, however it was written
    password = request.form.get("password") or ""
    ip = client_ip()
    # First, before any hash or database write: how often this address may try at all.
    if not services.login_gate.admit(ip):
        _refused(typed, "rate_limited")
        return _login_form("Too many sign-in attempts from your address; wait a minute.", 429, typed)
    sent, expected = request.form.get("csrf_token") or "", request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        _refused(typed, "csrf")
        return _login_form("Your sign-in form expired; please try again.", 403, typed)
    if not services.web_sessions.attempt(account, ip):
        _refused(typed, "throttled")
        return _login_form("Too many failed attempts; try again later.", 429, typed)
    with services.login_gate.hashing:
        user = services.directory.check_password(username, tenant, password)
    if user is None:
        _refused(typed, "password")
        return _login_form("Wrong username or password.", 401, typed)
    services.web_sessions.succeeded(account, ip)
    token, _ = services.web_sessions.start(user.id, client_ip(), replacing=request.cookies.get(COOKIE))
    audit.record(
        services.db,
        tenant=tenant,
        actor=f"session:{username}",
        action="login",
        target=f"user:{username}",
        ip=client_ip(),
    )
    response = redirect(_safe_next(request.form.get("next")), 303)
    settings = services.settings.auth
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="Lax",
        secure=_secure(),
        path="/",
        max_age=int(settings.session_absolute_hours * 3600),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@bp.post("/logout")
@requires(SIGNED_IN)
def logout() -> BaseResponse:
    services = _services()
    token = request.cookies.get(COOKIE)
    if token:
        services.web_sessions.end(token)
    actor = g.warden_actor
    audit.record(
        services.db,
        tenant=actor.tenant,
        actor=f"{actor.via}:{actor.username}",
        action="logout",
        target=f"user:{actor.username}",
        ip=client_ip(),
    )
    response = redirect("/login", 303)
    response.delete_cookie(COOKIE, path="/")
    return response


@bp.get("/")
@requires(Permission.DASHBOARDS_READ, page=True)
def home() -> str:
    return render_template("home.html", actor=g.warden_actor, csrf_token=g.get("warden_csrf", ""))
