"""The prompt pages: browse, compare two versions, move a label; read needs `prompts:read`, moving a
label `prompts:manage`, the session's CSRF token and the approval rule."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from analytics.access import Binding
from proxy.identity.directory import Change
from proxy.upstreams.fake import FakeUpstream
from tests.support import PASSWORD, LiveWarden, make_settings, sign_in

V1 = {"template": {"text": "Answer for {{ company }}: be brief."}}
V2 = {"template": {"text": "Answer for {{ company }}: be brief <and> kind."}}


@pytest.fixture
def live(tmp_path: Path, fake_upstream: FakeUpstream) -> Iterator[LiveWarden]:
    warden = LiveWarden(
        make_settings(tmp_path, fake_upstream.base_url, prompts={"require_approval": ["production"]})
    )
    setup = Change("cli:test", "default")
    for name, role in (("ana", "admin"), ("bob", "admin"), ("analyst", "analyst"), ("viewer", "viewer")):
        warden.services.directory.create_user(name, PASSWORD, setup, (Binding(role),))
    store = warden.services.prompts
    store.create_version("default", "support", V1, Change("session:ana", "default"))
    store.create_version("default", "support", V2, Change("session:ana", "default"))
    yield warden
    warden.stop()


def root(live: LiveWarden) -> str:
    return live.base_url.removesuffix("/v1")


def csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, "the page has no label form"
    return found.group(1)


def test_browse_and_compare(live: LiveWarden) -> None:
    with closing(sign_in(root(live), "analyst")) as analyst:
        listing = analyst.get("/prompts")
        assert listing.status_code == 200 and "support" in listing.text
        page = analyst.get("/prompts/support", params={"from": 1, "to": 2})
        assert page.status_code == 200
        # The diff shows the change, escaped: a template is text, never markup on the page.
        assert "+Answer for {{ company }}: be brief &lt;and&gt; kind." in page.text
        assert "<and>" not in page.text
        assert 'name="csrf_token"' not in page.text  # an analyst cannot move labels: no form
        assert analyst.get("/prompts/nope").status_code == 404
        assert "nope" in analyst.get("/prompts/nope").text


def test_a_label_moves_only_as_the_rules_allow(live: LiveWarden) -> None:
    with closing(sign_in(root(live), "ana")) as ana, closing(sign_in(root(live), "bob")) as bob:
        token = csrf(ana.get("/prompts/support"))
        refused = ana.post(
            "/prompts/support/label", data={"label": "production", "version": "2", "csrf_token": token}
        )
        assert refused.status_code == 409 and "approv" in refused.text
        forged = ana.post(
            "/prompts/support/label", data={"label": "staging", "version": "2"}, headers={"x-csrf-token": ""}
        )
        assert forged.status_code == 403  # no CSRF token: a form another site posted
        staged = ana.post(
            "/prompts/support/label", data={"label": "staging", "version": "2", "csrf_token": token}
        )
        assert staged.status_code == 303
        assert live.services.prompts.get("default", "support", label="staging").number == 2
        assert bob.post("/api/prompts/support/versions/2/approve").status_code == 200
        moved = ana.post(
            "/prompts/support/label", data={"label": "production", "version": "2", "csrf_token": token}
        )
        assert moved.status_code == 303
        assert "production" in ana.get("/prompts/support").text


def test_people_without_the_permission_are_refused(live: LiveWarden) -> None:
    with closing(sign_in(root(live), "viewer")) as viewer:
        assert viewer.get("/prompts").status_code == 403
        assert viewer.get("/prompts/support").status_code == 403
    with closing(sign_in(root(live), "analyst")) as analyst:
        page = analyst.get("/prompts/support")
        assert analyst.post("/prompts/support/label", data={"label": "x", "version": "1"}).status_code == 403
        assert page.status_code == 200
    anonymous = httpx.get(root(live) + "/prompts", follow_redirects=False)
    assert anonymous.status_code in (302, 303, 401)
