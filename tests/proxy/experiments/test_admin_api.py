"""`/api/experiments` on a live Warden: create, read, start, stop and promote with tenant-wide RBAC,
validation errors that name the cause, a promotion that obeys the approval rule, and the audit trail."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from analytics.access import Binding
from proxy.identity import audit
from proxy.identity.directory import Change
from proxy.upstreams.fake import FakeUpstream
from tests.support import PASSWORD, LiveWarden, make_settings, sign_in

ANA = Change("session:ana", "default")
SPLIT: dict[str, Any] = {
    "name": "brevity",
    "kind": "prompt",
    "target": "support",
    "variants": [
        {"name": "control", "weight": 50, "label": "production"},
        {"name": "brief", "weight": 50, "version": 2},
    ],
}


@pytest.fixture
def live(tmp_path: Path, fake_upstream: FakeUpstream) -> Iterator[LiveWarden]:
    warden = LiveWarden(
        make_settings(tmp_path, fake_upstream.base_url, prompts={"require_approval": ["production"]})
    )
    setup = Change("cli:test", "default")
    for name, binding in (
        ("ana", Binding("admin")),
        ("bob", Binding("admin")),
        ("analyst", Binding("analyst")),
    ):
        warden.services.directory.create_user(name, PASSWORD, setup, (binding,))
    prompts = warden.services.prompts
    for text in ("Be brief.", "Be very brief."):
        prompts.create_version(
            "default", "support", {"template": {"messages": [{"role": "system", "content": text}]}}, ANA
        )
    prompts.approve("default", "support", 1, Change("session:bob", "default"))
    prompts.set_label("default", "support", "production", 1, setup)
    warden.root = warden.base_url.removesuffix("/v1")  # type: ignore[attr-defined]
    yield warden
    warden.stop()


def person(live: LiveWarden, name: str) -> httpx.Client:
    return sign_in(live.root, name)  # type: ignore[attr-defined]


def test_create_start_promote_and_read(live: LiveWarden) -> None:
    with (
        closing(person(live, "ana")) as ana,
        closing(person(live, "bob")) as bob,
        closing(person(live, "analyst")) as analyst,
    ):
        uneven = ana.post(
            "/api/experiments", json={**SPLIT, "variants": [{**v, "weight": 40} for v in SPLIT["variants"]]}
        )
        assert uneven.status_code == 400
        assert uneven.json()["error"]["message"].endswith("must sum to 100; these sum to 80")
        made = ana.post("/api/experiments", json=SPLIT)
        assert made.status_code == 201, made.text
        assert (made.json()["state"], made.json()["sticky"]) == ("draft", "user")
        assert analyst.post("/api/experiments/brevity/start").status_code == 403
        assert ana.post("/api/experiments/brevity/start").json()["state"] == "running"
        assert analyst.get("/api/experiments").json()["experiments"][0]["experiment"] == "brevity"
        assert ana.post("/api/experiments/brevity/promote", json={}).status_code == 400  # which variant?
        early = ana.post("/api/experiments/brevity/promote", json={"variant": "brief"})
        assert early.status_code == 409 and "approved by someone other" in early.json()["error"]["message"]
        assert bob.post("/api/prompts/support/versions/2/approve").status_code == 200
        promoted = ana.post("/api/experiments/brevity/promote", json={"variant": "brief"})
        assert promoted.status_code == 200, promoted.text
        assert (promoted.json()["state"], promoted.json()["winner"]) == ("stopped", "brief")
        assert analyst.get("/api/prompts/support?label=production").json()["version"] == 2
        shown = analyst.get("/api/experiments/brevity").json()
        assert shown["winner"] == "brief" and shown["variants"] == SPLIT["variants"]
        assert ana.post("/api/experiments/brevity/stop").status_code == 409
        assert analyst.get("/api/experiments/nope").status_code == 404
    actions = [(e.action, e.actor) for e in reversed(audit.entries(live.services.db, tenant="default"))]
    assert [a for a in actions if a[0].startswith(("experiment.", "prompt.label"))] == [
        ("prompt.label", "cli:test"),
        ("experiment.create", "session:ana"),
        ("experiment.start", "session:ana"),
        ("prompt.label", "session:ana"),
        ("experiment.promote", "session:ana"),
    ]
    assert ("denied", "session:analyst") in actions
    assert audit.verify(live.services.db).ok


CHEAPER: dict[str, Any] = {
    "name": "cheaper",
    "kind": "model",
    "target": "gpt-fake",
    "sticky": "request",
    "variants": [
        {"name": "now", "weight": 90, "model": "gpt-fake"},
        {"name": "mini", "weight": 10, "model": "text-embed-fake"},
    ],
}


def test_promote_and_retire_a_model_experiment(live: LiveWarden) -> None:
    with closing(person(live, "ana")) as ana, closing(person(live, "analyst")) as analyst:
        assert ana.post("/api/experiments", json=CHEAPER).status_code == 201
        assert ana.post("/api/experiments/cheaper/start").status_code == 200
        early = ana.post("/api/experiments/cheaper/retire")
        assert early.status_code == 409
        assert early.json()["error"]["message"].endswith("only a promoted model experiment retires")
        promoted = ana.post("/api/experiments/cheaper/promote", json={"variant": "mini"})
        assert (promoted.json()["state"], promoted.json()["winner"]) == ("promoted", "mini")
        blocked = ana.post("/api/experiments", json={**CHEAPER, "name": "next"})
        assert blocked.status_code == 409 and "'cheaper' is promoted" in blocked.json()["error"]["message"]
        assert ana.post("/api/experiments/cheaper/stop").status_code == 409
        assert analyst.post("/api/experiments/cheaper/retire").status_code == 403
        assert ana.post("/api/experiments/nope/retire").status_code == 404
        retired = ana.post("/api/experiments/cheaper/retire")
        assert retired.status_code == 200 and retired.json()["state"] == "retired"
        assert ana.post("/api/experiments/cheaper/retire").status_code == 409
        assert ana.post("/api/experiments", json={**CHEAPER, "name": "next"}).status_code == 201
    actions = [e.action for e in reversed(audit.entries(live.services.db, tenant="default"))]
    assert [a for a in actions if a.startswith("experiment.")] == [
        "experiment.create",
        "experiment.start",
        "experiment.promote",
        "experiment.retire",
        "experiment.create",
    ]
    assert audit.verify(live.services.db).ok
