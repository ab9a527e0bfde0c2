"""Azure OpenAI (`type: azure_openai`): OpenAI's wire format under Azure's URL layout and key header.

A model is served by a *deployment* that the resource owner named. Chat completions, completions and
embeddings use the dated API, where the deployment is part of the path:
`openai/deployments/<deployment>/<route>?api-version=<v>`. The Responses API exists only in Azure's v1
API (`openai/v1/responses`, no api-version), which reads the deployment from the body's `model`, so
the body is rewritten there. The gateway passes no model name, so it is read from the body.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar
from urllib.parse import quote

from proxy.settings import UpstreamSettings
from proxy.upstreams.http import OPENAI_APIS, HttpUpstream

# Routes of the dated, deployment-scoped API; every other route goes to the v1 API.
DEPLOYMENT_ROUTES = frozenset({"chat/completions", "completions", "embeddings"})


class AzureOpenAIUpstream(HttpUpstream):
    default_apis: ClassVar[frozenset[str]] = OPENAI_APIS

    def _auth_headers(self, settings: UpstreamSettings) -> dict[str, str]:
        return {"api-key": settings.api_key} if settings.api_key else {}

    def _target(self, route: str, body: bytes) -> tuple[str, bytes]:
        payload = _json_object(body)
        model = payload.get("model") if payload is not None else None
        if not isinstance(model, str):
            # No deployment to name: the v1 API reads `model` itself and answers Azure's own 400.
            return f"openai/v1/{route}", body
        deployment = self.settings.deployments.get(model, model)
        if route in DEPLOYMENT_ROUTES:
            version = quote(self.settings.api_version, safe="")
            return f"openai/deployments/{quote(deployment, safe='')}/{route}?api-version={version}", body
        if deployment != model and payload is not None:
            payload["model"] = deployment
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        return f"openai/v1/{route}", body


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None
