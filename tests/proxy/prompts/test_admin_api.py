"""`/api/prompts` on a live Warden: tenant-wide RBAC, the approval rule, audit, 404s and 400s that name
what is wrong, and API-key reads with an ETag."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from analytics.access import Binding
from proxy.identity import audit
from proxy.identity.directory import Change
from proxy.upstreams.fake import FakeUpstream
from tests.support import ADMIN_TOKEN, PASSWORD, LiveWarden, make_settings, sign_in

VERSION = {
    "template": {
        "messages": [
            {"role": "system", "content": "You answer for {{ company }}."},
            {"role": "user", "content": "{{ question }}"},
        ]
    },
    "model": "gpt-fake",
}


@pytest.fixture
def live(tmp_path: Path, fake_upstream: FakeUpstream) -> Iterator[LiveWarden]:
    warden = LiveWarden(
        make_settings(
            tmp_path,
            fake_upstream.base_url,
            auth={"admin_token": ADMIN_TOKEN},
            prompts={"require_approval": ["production"]},
        )
    )
    setup = Change("cli:test", "default")
    warden.services.directory.create_team("alpha", setup)
    for name, binding in (
        ("ana", Binding("admin")),
        ("bob", Binding("admin")),
        ("viewer", Binding("viewer")),
        ("analyst", Binding("analyst")),
        ("alpha-admin", Binding("admin", "alpha")),
    ):
        warden.services.directory.create_user(name, PASSWORD, setup, (binding,))
    warden.services.directory.create_user(
        "acme-admin", PASSWORD, Change("cli:test", "acme"), (Binding("admin"),)
    )
    warden.root = warden.base_url.removesuffix("/v1")  # type: ignore[attr-defined]
    yield warden
    warden.stop()


def person(live: LiveWarden, name: str) -> httpx.Client:
    return sign_in(live.root, name if name != "acme-admin" else "acme-admin@acme")  # type: ignore[attr-defined]


def test_create_approve_label_and_read(live: LiveWarden) -> None:
    with (
        closing(person(live, "ana")) as ana,
        closing(person(live, "bob")) as bob,
        closing(person(live, "analyst")) as analyst,
    ):
        made = ana.post("/api/prompts/support/versions", json=VERSION)
        assert made.status_code == 201, made.text
        assert made.json()["version"] == 1 and made.json()["variables"] == ["company", "question"]
        own = ana.post("/api/prompts/support/versions/1/approve")
        assert own.status_code == 403 and "someone else approves it" in own.json()["error"]["message"]
        early = ana.put("/api/prompts/support/labels/production", json={"version": 1})
        assert early.status_code == 409
        assert bob.post("/api/prompts/support/versions/1/approve").json()["approved_by"] == ["session:bob"]
        moved = ana.put("/api/prompts/support/labels/production", json={"version": 1})
        assert moved.status_code == 200 and moved.json()["labels"] == ["production"]
        ana.post("/api/prompts/support/versions", json={**VERSION, "model": "gpt-other"})

        assert analyst.get("/api/prompts").json() == {
            "prompts": [{"prompt": "support", "versions": 2, "labels": {"production": 1}}]
        }
        assert analyst.get("/api/prompts/support?label=production").json()["version"] == 1
        assert analyst.get("/api/prompts/support").json()["version"] == 2
        diff = analyst.get("/api/prompts/support/diff?from=1&to=2").json()["diff"]
        assert '-  "model": "gpt-fake",\n+  "model": "gpt-other",\n' in diff
        refused = analyst.post("/api/prompts/support/versions", json=VERSION)
        assert refused.status_code == 403
    actions = [(e.action, e.actor) for e in reversed(audit.entries(live.services.db, tenant="default"))]
    assert [a for a in actions if a[0].startswith("prompt.")] == [
        ("prompt.version", "session:ana"),
        ("prompt.approve", "session:bob"),
        ("prompt.label", "session:ana"),
        ("prompt.version", "session:ana"),
    ]
    assert ("denied", "session:analyst") in actions
    assert audit.verify(live.services.db).ok


@pytest.mark.parametrize("who", ["viewer", "alpha-admin"])
def test_a_viewer_and_a_teams_admin_are_refused(live: LiveWarden, who: str) -> None:
    with closing(person(live, who)) as client:
        for method, path in (
            ("GET", "/api/prompts"),
            ("GET", "/api/prompts/support"),
            ("POST", "/api/prompts/support/versions"),
            ("PUT", "/api/prompts/support/labels/staging"),
        ):
            answer = client.request(method, path, json=VERSION if method != "GET" else None)
            assert answer.status_code == 403, (method, path, answer.text)
            assert answer.json()["error"]["code"] == "permission_denied"


def test_another_tenant_sees_nothing(live: LiveWarden) -> None:
    with closing(person(live, "ana")) as ana, closing(person(live, "acme-admin")) as acme:
        ana.post("/api/prompts/support/versions", json=VERSION)
        assert acme.get("/api/prompts").json() == {"prompts": []}
        missing = acme.get("/api/prompts/support")
        assert missing.status_code == 404 and "no prompt 'support'" in missing.json()["error"]["message"]
        other_key = live.services.keys.create("ops", tenant="acme")[1]
    with httpx.Client(base_url=live.root, timeout=10) as client:  # type: ignore[attr-defined]
        answer = client.get("/api/prompts/support", headers={"authorization": f"Bearer {other_key}"})
    assert answer.status_code == 404


def test_unknown_names_and_bad_input_are_named(live: LiveWarden) -> None:
    with closing(person(live, "ana")) as ana:
        assert ana.get("/api/prompts/nope").json()["error"]["message"] == "no prompt 'nope'"
        ana.post("/api/prompts/support/versions", json=VERSION)
        label = ana.get("/api/prompts/support?label=canary")
        assert label.status_code == 404 and "has no label 'canary'" in label.json()["error"]["message"]
        version = ana.get("/api/prompts/support?version=9")
        assert version.status_code == 404 and "has no version 9" in version.json()["error"]["message"]
        assert ana.get("/api/prompts/support?version=x").status_code == 400
        bad = ana.post(
            "/api/prompts/support/versions", json={"template": {"text": "{{ a }}"}, "variables": ["b"]}
        )
        assert bad.status_code == 400 and "undeclared variables: a" in bad.json()["error"]["message"]
        assert ana.post("/api/prompts/support/versions", content=b"nope").status_code == 400
        assert ana.put("/api/prompts/support/labels/Bad%20Label", json={"version": 1}).status_code == 400


def test_an_api_key_of_the_tenant_reads_with_an_etag(live: LiveWarden) -> None:
    with closing(person(live, "ana")) as ana, closing(person(live, "bob")) as bob:
        ana.post("/api/prompts/support/versions", json=VERSION)
        bob.post("/api/prompts/support/versions/1/approve")
        ana.put("/api/prompts/support/labels/production", json={"version": 1})
        key = live.create_key(team="alpha")
        with httpx.Client(base_url=live.root, timeout=10) as client:  # type: ignore[attr-defined]
            assert client.get("/api/prompts/support").status_code == 401
            assert (
                client.get("/api/prompts/support", headers={"authorization": "Bearer wk-nope"}).status_code
                == 401
            )
            client.headers["authorization"] = f"Bearer {key}"
            first = client.get("/api/prompts/support", params={"label": "production"})
            assert first.status_code == 200 and first.json()["version"] == 1
            etag = first.headers["etag"]
            assert etag == f'"{first.json()["etag"]}"'
            again = client.get(
                "/api/prompts/support", params={"label": "production"}, headers={"if-none-match": etag}
            )
            assert again.status_code == 304 and again.content == b""
            assert client.get("/api/prompts").status_code == 401  # a key reads one prompt, it does not browse
            ana.post("/api/prompts/support/versions", json={**VERSION, "model": "gpt-other"})
            bob.post("/api/prompts/support/versions/2/approve")
            ana.put("/api/prompts/support/labels/production", json={"version": 2})
            moved = client.get(
                "/api/prompts/support", params={"label": "production"}, headers={"if-none-match": etag}
            )
            assert moved.status_code == 200 and moved.json()["version"] == 2 and moved.headers["etag"] != etag
