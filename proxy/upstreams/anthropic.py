"""Anthropic's Messages API (`type: anthropic`): the HTTP upstream, signed Anthropic's way.

Routes are Anthropic's own (`messages`, `messages/count_tokens`) under the base URL, so only the
headers differ from an OpenAI-compatible API; streams are relayed byte for byte like any other.
"""

from __future__ import annotations

from typing import ClassVar

from proxy.settings import ANTHROPIC_BASE_URL, UpstreamSettings
from proxy.upstreams.http import HttpUpstream


class AnthropicUpstream(HttpUpstream):
    default_apis: ClassVar[frozenset[str]] = frozenset({"messages"})

    def _auth_headers(self, settings: UpstreamSettings) -> dict[str, str]:
        # Anthropic rejects a request without a version pin, and reads the key from x-api-key only.
        headers = {"anthropic-version": settings.anthropic_version}
        if settings.api_key:
            headers["x-api-key"] = settings.api_key
        return headers

    def _base_url(self, settings: UpstreamSettings) -> str:
        return settings.base_url or ANTHROPIC_BASE_URL
