"""What every response tells a browser, and what Warden believes of the proxies in front of it.

Pages get a Content-Security-Policy whose scripts are Warden's own files plus inline scripts that carry
this response's nonce (templates write `nonce="{{ csp_nonce() }}"`); styles may be inline, since
plotly.js styles its SVG through attributes. Other responses get a policy that allows nothing. Every
response forbids framing (clickjacking the transcript page), MIME sniffing and sending a referrer. The
proxy's model routes skip the CSP (no browser renders them) but keep the cheap headers.

Forwarded headers are believed only from `server.trusted_proxies` hops (werkzeug's ProxyFix): with it,
`request.is_secure` (and so `auth.cookie_secure: auto`) and the audit log's client address come from
`X-Forwarded-Proto` and `X-Forwarded-For`; without it, anyone could claim any address.
"""

from __future__ import annotations

import secrets

from flask import Flask, Response, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from proxy.formats import FORMATS

ALWAYS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'{nonce}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
NOTHING_POLICY = "default-src 'none'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
# The model routes (and /v1/ but the policy API): the hot path, never rendered by a browser.
_MODEL_PREFIXES = ("/v1/", *(f"/{f.path}" for f in FORMATS.values()), "/models")


def csp_nonce() -> str:
    """This response's script nonce, made on first use (only pages with an inline script need one)."""
    if "warden_csp_nonce" not in g:
        g.warden_csp_nonce = secrets.token_urlsafe(18)
    return str(g.warden_csp_nonce)


def _add_headers(response: Response) -> Response:
    for name, value in ALWAYS.items():
        response.headers.setdefault(name, value)
    path = request.path
    if path.startswith(_MODEL_PREFIXES) and not path.startswith("/v1/warden/"):
        return response
    if response.mimetype == "text/html":
        nonce = g.get("warden_csp_nonce")
        policy = PAGE_POLICY.format(nonce=f" 'nonce-{nonce}'" if nonce else "")
    else:
        policy = NOTHING_POLICY
    response.headers.setdefault("Content-Security-Policy", policy)
    return response


def init_app(app: Flask, trusted_proxies: int) -> None:
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    app.after_request(_add_headers)
    if trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=trusted_proxies, x_proto=trusted_proxies)  # type: ignore[method-assign]
