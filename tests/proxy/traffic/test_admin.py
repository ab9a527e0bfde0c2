"""Limits and budgets set through the admin API and the CLI: applied at once, scoped to teams,
audited, validated; `GET /api/budgets` shows spend and what remains."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from click.testing import CliRunner

from analytics.access import Binding
from proxy.cli.main import main as cli
from proxy.identity import audit
from proxy.identity.directory import Change
from proxy.upstreams.fake import FakeUpstream
from tests.support import ADMIN_TOKEN, PASSWORD, LiveWarden, make_settings, sign_in, write_config


@pytest.fixture
def live(tmp_path: Path, fake_upstream: FakeUpstream) -> Iterator[LiveWarden]:
    warden = LiveWarden(make_settings(tmp_path, fake_upstream.base_url, auth={"admin_token": ADMIN_TOKEN}))
    setup = Change("cli:test", "default")
    for team in ("alpha", "beta"):
        warden.services.directory.create_team(team, setup)
    warden.services.directory.create_user("beta-admin", PASSWORD, setup, (Binding("admin", "beta"),))
    warden.services.directory.create_user("alpha-analyst", PASSWORD, setup, (Binding("analyst", "alpha"),))
    yield warden
    warden.stop()


def admin(live: LiveWarden) -> httpx.Client:
    root = live.base_url.removesuffix("/v1")
    return httpx.Client(base_url=root, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)


def ask(live: LiveWarden, key: str) -> int:
    client = openai.OpenAI(base_url=live.base_url, api_key=key, max_retries=0)
    try:
        client.chat.completions.create(model="gpt-fake", messages=[{"role": "user", "content": "hi"}])
    except openai.RateLimitError:
        return 429
    return 200


def test_a_limit_set_through_the_api_applies_at_once_and_is_audited(live: LiveWarden) -> None:
    key = live.create_key(team="alpha")
    key_id = live.services.keys.authenticate(key).key_id
    with admin(live) as api:
        answer = api.put("/api/limits", json={"scope": "key", "match": key_id, "rpm": 2})
        assert answer.status_code == 200, answer.text
        rule_id = answer.json()["id"]
        assert [ask(live, key) for _ in range(3)] == [200, 200, 429]
        listed = api.get("/api/limits").json()["limits"]
        assert [(r["id"], r["source"], r["rpm"]) for r in listed] == [(rule_id, "api", 2)]
        assert api.delete(f"/api/limits/{rule_id}").status_code == 200
        assert api.get("/api/limits").json()["limits"] == []
    actions = [e.action for e in audit.entries(live.services.db, tenant="default")]
    assert "limit.set" in actions and "limit.delete" in actions


def test_budgets_show_spend_and_what_remains(live: LiveWarden) -> None:
    key = live.create_key(team="alpha")
    with admin(live) as api:
        put = api.put(
            "/api/budgets", json={"scope": "team", "match": "alpha", "period": "day", "hard_usd": 1}
        )
        assert put.status_code == 200, put.text
        assert ask(live, key) == 200
        (budget,) = api.get("/api/budgets").json()["budgets"]
        on_the_cost_page = api.get("/dashboards/cost.json").json()["budgets"]
        assert "Budgets this period" in api.get("/dashboards/cost").text
    assert on_the_cost_page == [budget]
    (usage,) = budget["usage"]
    rows = live.rows_dicts("SELECT cost_micro_usd FROM requests WHERE status = 200")
    spent = sum(r["cost_micro_usd"] for r in rows) / 1e6
    assert usage["team"] == "alpha" and usage["spent_usd"] == pytest.approx(spent) and spent > 0
    assert usage["remaining_usd"] == pytest.approx(1 - spent) and usage["reserved_usd"] == 0


def test_people_manage_and_see_only_their_teams(live: LiveWarden) -> None:
    root = live.base_url.removesuffix("/v1")
    with admin(live) as api:
        api.put("/api/limits", json={"scope": "team", "match": "alpha", "rpm": 100})
        api.put("/api/limits", json={"scope": "team", "match": "beta", "rpm": 50})
    beta = sign_in(root, "beta-admin")
    try:
        assert beta.put("/api/limits", json={"scope": "team", "match": "beta", "tpm": 10}).status_code == 200
        refused = beta.put("/api/limits", json={"scope": "team", "match": "alpha", "rpm": 1})
        assert refused.status_code == 403
        assert beta.put("/api/limits", json={"scope": "tenant", "rpm": 1}).status_code == 403
    finally:
        beta.close()
    analyst = sign_in(root, "alpha-analyst")
    try:
        seen = analyst.get("/api/limits").json()["limits"]
        assert {r["match"] for r in seen} == {"alpha"}
        assert (
            analyst.put("/api/limits", json={"scope": "team", "match": "alpha", "rpm": 1}).status_code == 403
        )
    finally:
        analyst.close()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"scope": "galaxy", "match": "alpha", "rpm": 1},
            "field 'scope' must be one of key, team, project, tenant",
        ),
        ({"scope": "team", "match": "alpha", "rpm": -1}, "field 'rpm' must be an integer from 0"),
        ({"scope": "team", "match": "alpha"}, "a limit needs rpm, tpm or concurrent"),
        ({"scope": "team", "match": "", "rpm": 1}, "field 'match' must name"),
        ({"scope": "key", "match": "nope", "rpm": 1}, "no key 'nope'"),
    ],
)
def test_bad_limits_are_refused_with_a_reason(
    live: LiveWarden, body: dict[str, object], message: str
) -> None:
    with admin(live) as api:
        answer = api.put("/api/limits", json=body)
    assert answer.status_code in (400, 404)
    assert message in answer.json()["error"]["message"]


def test_the_cli_sets_lists_and_deletes(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"storage": {"database_url": f"sqlite:///{tmp_path / 'w.db'}"}})
    runner = CliRunner()
    assert runner.invoke(cli, ["migrate", "--config", str(config)]).exit_code == 0
    assert runner.invoke(cli, ["keys", "create", "--config", str(config), "--team", "alpha"]).exit_code == 0
    unknown = runner.invoke(
        cli, ["limits", "set", "--config", str(config), "--tenant", "acme", "--scope", "tenant", "--rpm", "5"]
    )
    assert unknown.exit_code == 1 and "no tenant 'acme'" in unknown.output
    made = runner.invoke(
        cli,
        [
            "budgets",
            "set",
            "--config",
            str(config),
            "--scope",
            "team",
            "--match",
            "alpha",
            "--period",
            "month",
            "--hard-usd",
            "20",
            "--soft-usd",
            "15",
        ],
    )
    assert made.exit_code == 0, made.output
    rule_id = json.loads(made.output)["id"]
    listed = runner.invoke(cli, ["budgets", "list", "--config", str(config), "--json"])
    assert json.loads(listed.output)["hard_usd"] == 20
    bad = runner.invoke(
        cli,
        [
            "budgets",
            "set",
            "--config",
            str(config),
            "--scope",
            "team",
            "--match",
            "alpha",
            "--period",
            "month",
            "--hard-usd",
            "5",
            "--soft-usd",
            "15",
        ],
    )
    assert bad.exit_code == 1 and "soft_usd must not be above hard_usd" in bad.output
    assert runner.invoke(cli, ["budgets", "delete", "--config", str(config), rule_id]).exit_code == 0
    assert runner.invoke(cli, ["budgets", "list", "--config", str(config)]).output == ""
