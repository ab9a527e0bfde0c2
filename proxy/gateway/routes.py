"""The OpenAI-compatible HTTP surface. Views stay thin; `Forwarder` does the work."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, current_app, request

from proxy.formats import FORMATS
from proxy.gateway.forwarder import Forwarder
from proxy.identity.guard import API_KEY, PUBLIC, declared

bp = Blueprint("proxy", __name__)


def _forwarder() -> Forwarder:
    forwarder: Forwarder = current_app.extensions["warden"].forwarder
    return forwarder


def _forwarding(route: str) -> Callable[[], Response]:
    @declared(API_KEY)
    def forward() -> Response:
        return _forwarder().forward(request, route)

    return forward


@declared(API_KEY)
def models() -> Response:
    return _forwarder().list_models(request)


@declared(API_KEY)
def model(model_id: str) -> Response:
    return _forwarder().list_models(request, model_id)


@declared(API_KEY)
def unsupported(path: str) -> Response:
    return _forwarder().unsupported(request, path)


# Each route is served with and without the /v1 prefix: clients differ in where base_url ends.
for prefix in ("/v1", ""):
    for fmt in FORMATS.values():
        bp.add_url_rule(
            f"{prefix}/{fmt.path}",
            f"{fmt.route.replace('.', '_')}{prefix}",
            _forwarding(fmt.route),
            methods=["POST"],
        )
    bp.add_url_rule(f"{prefix}/models", f"models{prefix}", models, methods=["GET"])
    bp.add_url_rule(f"{prefix}/models/<path:model_id>", f"model{prefix}", model, methods=["GET"])
# Any other /v1 path gets an explicit "not served by Warden" (the routes above and Warden's own
# /v1/warden/... routes are more specific and win).
bp.add_url_rule(
    "/v1/<path:path>", "unsupported", unsupported, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]
)


@bp.get("/metrics")
@declared(PUBLIC)
def metrics() -> Response:
    # Counters only: no tenant, team or key appears here, so scrapers need no credentials.
    body = current_app.extensions["warden"].metrics.render()
    return Response(body, mimetype="text/plain; version=0.0.4")


@bp.get("/healthz")
@declared(PUBLIC)
def healthz() -> Response:
    return Response(b'{"status":"ok"}', mimetype="application/json")
