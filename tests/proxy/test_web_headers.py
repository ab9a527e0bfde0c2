"""Browser hygiene on every people-facing response (CSP with a nonce, no framing, no sniffing, no
referrer), and client addresses and HTTPS seen through trusted proxies only when configured."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from analytics.access import Binding
from proxy.identity.directory import Change
from proxy.upstreams.fake import FakeUpstream
from tests.support import ADMIN_TOKEN, PASSWORD, LiveWarden, login_form, make_settings

BROWSER_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def start(tmp_path: Path, fake_upstream: FakeUpstream, **server: object) -> LiveWarden:
    settings = make_settings(
        tmp_path,
        fake_upstream.base_url,
        auth={"admin_token": ADMIN_TOKEN},
        **({"server": server} if server else {}),
    )
    live = LiveWarden(settings)
    live.services.directory.create_user("admin", PASSWORD, Change("cli:test", "default"), (Binding("admin"),))
    live.root = live.base_url.removesuffix("/v1")  # type: ignore[attr-defined]
    return live


@pytest.fixture
def live(tmp_path: Path, fake_upstream: FakeUpstream) -> Iterator[LiveWarden]:
    warden = start(tmp_path, fake_upstream)
    yield warden
    warden.stop()


def test_pages_and_apis_carry_browser_headers(live: LiveWarden) -> None:
    root = live.root  # type: ignore[attr-defined]
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    answers = {
        "login page": httpx.get(root + "/login"),
        "transcript page": httpx.get(
            root + "/transcripts/00000000-0000-4000-8000-000000000000", headers=admin
        ),
        "dashboard": httpx.get(root + "/dashboards/overview", headers=admin),
        "dashboard json": httpx.get(root + "/dashboards/overview.json", headers=admin),
        "admin api": httpx.get(root + "/api/teams", headers=admin),
        "refusal": httpx.get(root + "/api/teams"),
        "not found": httpx.get(root + "/nowhere"),
        "health": httpx.get(root + "/healthz"),
    }
    for name, response in answers.items():
        assert response.status_code < 500, name
        for header, value in BROWSER_HEADERS.items():
            assert response.headers.get(header) == value, (name, header)
        csp = response.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp, (name, csp)
        assert "unsafe-inline" not in csp.split("script-src")[-1].split(";")[0], (name, csp)
    # The dashboard's one inline script runs by the response's nonce, and only by it.
    page = answers["dashboard"]
    nonce = re.search(r"'nonce-([^']+)'", page.headers["content-security-policy"])
    assert nonce is not None and f'<script nonce="{nonce.group(1)}">' in page.text
    other = httpx.get(root + "/dashboards/overview", headers=admin).headers["content-security-policy"]
    assert nonce.group(1) not in other, "a nonce is used once"
    # The proxy's hot path skips CSP but not nosniff.
    chat = httpx.post(
        live.base_url + "/chat/completions",
        json={"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {live.create_key()}"},
    )
    assert chat.status_code == 200 and chat.headers["x-content-type-options"] == "nosniff"


def sign_in_through_a_proxy(live: LiveWarden) -> httpx.Response:
    client = httpx.Client(base_url=live.root, timeout=10)  # type: ignore[attr-defined]
    forwarded = {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"}
    return client.post("/login", data=login_form(client, "admin", PASSWORD), headers=forwarded)


def login_ips(live: LiveWarden) -> list[str]:
    admin = httpx.Client(base_url=live.root, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})  # type: ignore[attr-defined]
    return [e["ip"] for e in admin.get("/api/audit").json()["entries"] if e["action"] == "login"]


def test_forwarded_headers_are_ignored_by_default(live: LiveWarden) -> None:
    signed_in = sign_in_through_a_proxy(live)
    assert signed_in.status_code == 303
    assert "secure" not in signed_in.headers["set-cookie"].lower()
    assert login_ips(live) == ["127.0.0.1"]


def test_trusted_proxies_give_the_client_address_and_https(
    tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    live = start(tmp_path, fake_upstream, trusted_proxies=1)
    try:
        signed_in = sign_in_through_a_proxy(live)
        assert signed_in.status_code == 303
        cookie = signed_in.headers["set-cookie"].lower()
        assert "warden_session=" in cookie and "; secure" in cookie
        assert login_ips(live) == ["203.0.113.7"]
    finally:
        live.stop()
