"""The OpenAI-compatible HTTP surface. Views stay thin; `Forwarder` does the work."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from proxy.forward import Forwarder

bp = Blueprint("proxy", __name__)


def _forwarder() -> Forwarder:
    return current_app.extensions["warden.forwarder"]


# Each route is served with and without the /v1 prefix: clients differ in where base_url ends.
for prefix in ("/v1", ""):
    bp.add_url_rule(
        f"{prefix}/chat/completions",
        f"chat{prefix}",
        methods=["POST"],
        view_func=lambda: _forwarder().forward(request, "chat.completions"),
    )
    bp.add_url_rule(
        f"{prefix}/completions",
        f"completions{prefix}",
        methods=["POST"],
        view_func=lambda: _forwarder().forward(request, "completions"),
    )
    bp.add_url_rule(
        f"{prefix}/embeddings",
        f"embeddings{prefix}",
        methods=["POST"],
        view_func=lambda: _forwarder().forward(request, "embeddings"),
    )
    bp.add_url_rule(
        f"{prefix}/models",
        f"models{prefix}",
        methods=["GET"],
        view_func=lambda: _forwarder().list_models(request),
    )


@bp.get("/healthz")
def healthz() -> Response:
    return Response(b'{"status":"ok"}', mimetype="application/json")
