"""The experiments dashboard's promote and retire buttons: shown to `prompts:manage` only, CSRF-checked
forms that move the label through the registry or end a model's route and land back on the dashboard;
refusals name their reason."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openai
import pytest

from analytics.access import Binding
from proxy.experiments.assign import CACHE_S
from proxy.identity.directory import Change
from proxy.upstreams.fake import FakeUpstream
from tests.support import PASSWORD, LiveWarden, make_settings, sign_in

ANA = Change("session:ana", "default")


@pytest.fixture
def live(tmp_path: Path, fake_upstream: FakeUpstream) -> Iterator[LiveWarden]:
    warden = LiveWarden(make_settings(tmp_path, fake_upstream.base_url))
    for name, role in (("ana", "admin"), ("analyst", "analyst")):
        warden.services.directory.create_user(name, PASSWORD, ANA, (Binding(role),))
    prompts = warden.services.prompts
    for text in ("You answer for {{ company }}.", "Be brief, {{ company }} agent."):
        prompts.create_version("default", "support", {"template": {"text": text}}, ANA)
    prompts.set_label("default", "support", "production", 1, ANA)
    variants = [
        {"name": "control", "weight": 50, "version": 1},
        {"name": "brief", "weight": 50, "version": 2},
    ]
    warden.services.experiments.create(
        "default", "brevity", {"kind": "prompt", "target": "support", "variants": variants}, ANA
    )
    warden.services.experiments.start("default", "brevity", ANA)
    key = warden.create_key(team="alpha")
    sdk = openai.OpenAI(base_url=warden.base_url, api_key=key, max_retries=0)
    sdk.chat.completions.create(
        model="gpt-fake",
        messages=[],
        user="u1",
        extra_body={"warden": {"prompt": "support", "variables": {"company": "Acme"}}},
    )
    sdk.close()
    yield warden
    warden.stop()


def window() -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "since": (now - timedelta(hours=1)).isoformat(),
        "until": (now + timedelta(minutes=5)).isoformat(),
    }


def test_a_manager_promotes_from_the_dashboard(live: LiveWarden) -> None:
    root = live.base_url.removesuffix("/v1")
    assert live.services.sink.flush(20)
    with closing(sign_in(root, "ana")) as ana, closing(sign_in(root, "analyst")) as analyst:
        page = ana.get("/dashboards/experiments", params=window())
        assert page.status_code == 200 and "brevity" in page.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None and "Promote</button>" in page.text
        assert "Promote</button>" not in analyst.get("/dashboards/experiments", params=window()).text

        form = {"variant": "brief", "csrf_token": token.group(1)}
        assert analyst.post("/experiments/brevity/promote", data=form).status_code == 403
        forged = ana.post(
            "/experiments/brevity/promote", data={"variant": "brief"}, headers={"x-csrf-token": ""}
        )
        assert forged.status_code == 403
        missing = ana.post("/experiments/nope/promote", data=form)
        assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]

        done = ana.post("/experiments/brevity/promote", data=form)
        assert done.status_code == 303 and done.headers["location"] == "/dashboards/experiments"
        assert live.services.prompts.get("default", "support", label="production").number == 2
        again = ana.post("/experiments/brevity/promote", data=form)
        assert again.status_code == 409 and "already promoted" in again.json()["error"]["message"]


def test_a_manager_retires_a_promoted_model_experiment_from_the_dashboard(live: LiveWarden) -> None:
    experiments = live.services.experiments
    variants = [
        {"name": "now", "weight": 50, "model": "gpt-fake"},
        {"name": "other", "weight": 50, "model": "text-embed-fake"},
    ]
    experiments.create(
        "default", "cheaper", {"kind": "model", "target": "gpt-fake", "variants": variants}, ANA
    )
    experiments.start("default", "cheaper", ANA)
    root = live.base_url.removesuffix("/v1")
    with closing(sign_in(root, "ana")) as ana, closing(sign_in(root, "analyst")) as analyst:
        page = ana.get("/dashboards/experiments", params=window())
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        form = {"csrf_token": token.group(1)}
        refused = ana.post("/experiments/cheaper/retire", data=form)
        assert refused.status_code == 409 and "only a promoted" in refused.json()["error"]["message"]
        promoted = ana.post("/experiments/cheaper/promote", data={**form, "variant": "other"})
        assert promoted.status_code == 303
        time.sleep(CACHE_S + 0.2)  # for the request below to be routed by the promotion
        sdk = openai.OpenAI(base_url=live.base_url, api_key=live.create_key(team="alpha"), max_retries=0)
        sdk.chat.completions.create(model="gpt-fake", messages=[{"role": "user", "content": "hi"}])
        sdk.close()
        assert live.services.sink.flush(20)
        page = ana.get("/dashboards/experiments", params=window())
        assert 'action="/experiments/cheaper/retire"' in page.text  # promoted: the Retire button shows
        assert "Retire</button>" not in analyst.get("/dashboards/experiments", params=window()).text

        assert analyst.post("/experiments/cheaper/retire", data=form).status_code == 403
        forged = ana.post("/experiments/cheaper/retire", data={}, headers={"x-csrf-token": ""})
        assert forged.status_code == 403
        done = ana.post("/experiments/cheaper/retire", data=form)
        assert done.status_code == 303 and done.headers["location"] == "/dashboards/experiments"
        assert experiments.get("default", "cheaper").state == "retired"
        assert (
            'action="/experiments/cheaper/retire"'
            not in ana.get("/dashboards/experiments", params=window()).text
        )
