"""The OpenAI-compatible HTTP surface. Views stay thin; `Forwarder` does the work."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from proxy.forward import Forwarder
from proxy.guard import API_KEY, PUBLIC, declared

bp = Blueprint("proxy", __name__)


def _forwarder() -> Forwarder:
    return current_app.extensions["warden.forwarder"]


@declared(API_KEY)
def chat_completions() -> Response:
    return _forwarder().forward(request, "chat.completions")


@declared(API_KEY)
def completions() -> Response:
    return _forwarder().forward(request, "completions")


@declared(API_KEY)
def embeddings() -> Response:
    return _forwarder().forward(request, "embeddings")


@declared(API_KEY)
def models() -> Response:
    return _forwarder().list_models(request)


# Each route is served with and without the /v1 prefix: clients differ in where base_url ends.
for prefix in ("/v1", ""):
    bp.add_url_rule(f"{prefix}/chat/completions", f"chat{prefix}", chat_completions, methods=["POST"])
    bp.add_url_rule(f"{prefix}/completions", f"completions{prefix}", completions, methods=["POST"])
    bp.add_url_rule(f"{prefix}/embeddings", f"embeddings{prefix}", embeddings, methods=["POST"])
    bp.add_url_rule(f"{prefix}/models", f"models{prefix}", models, methods=["GET"])


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
