"""The experiments page on real ClickHouse: per-variant numbers match the rows, a clear difference is
significant and an equal split is not, and a team-bound viewer sees only its team's rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from analytics.access import Binding
from proxy.identity.directory import Change
from proxy.upstreams.fake import FakeUpstream
from tests.support import ADMIN_TOKEN, PASSWORD, SINCE, WINDOW, LiveWarden, make_settings, sign_in


@pytest.fixture
def live(tmp_path: Path, fake_upstream: FakeUpstream) -> Iterator[LiveWarden]:
    # No synthetic traffic: every row on the page is one these tests wrote.
    warden = LiveWarden(make_settings(tmp_path, fake_upstream.base_url, auth={"admin_token": ADMIN_TOKEN}))
    setup = Change("cli:test", "default")
    for team in ("alpha", "beta"):
        warden.services.directory.create_team(team, setup)
    warden.services.directory.create_user("alpha-viewer", PASSWORD, setup, (Binding("viewer", "alpha"),))
    warden.root = warden.base_url.removesuffix("/v1")  # type: ignore[attr-defined]
    yield warden
    warden.stop()


def admin(live: LiveWarden) -> httpx.Client:
    return httpx.Client(base_url=live.root, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)  # type: ignore[attr-defined]


def add_variant(
    live: LiveWarden,
    experiment: str,
    variant: str,
    n: int,
    errors: int,
    scores: tuple[float, float],
    team: str = "alpha",
) -> None:
    """n rows of one variant (the first `errors` failed, a fifth blocked), each scored once: half with
    scores[0], half with scores[1]."""
    clickhouse = live.services.clickhouse()
    clickhouse.command(
        "INSERT INTO requests (tenant, team, request_id, ts, model, status, decision, latency_ms, "
        "cost_micro_usd, experiment, variant) SELECT 'default', {team:String}, generateUUIDv4(number), "
        "{ts:DateTime64(3, 'UTC')} + toIntervalSecond(number), 'gpt-4o', "
        "if(number < {errors:UInt32}, 500, 200), if(number % 5 = 0, 'block', 'allow'), 100 + number % 100, "
        "2000, {e:String}, {v:String} FROM numbers({n:UInt32})",
        parameters={
            "team": team,
            "ts": SINCE + timedelta(hours=1),
            "errors": errors,
            "e": experiment,
            "v": variant,
            "n": n,
        },
    )
    clickhouse.command(
        "INSERT INTO feedback (tenant, team, feedback_id, request_id, ts, score, label, source, actor, "
        "subject_hash, key_id, nonce, ciphertext, retention_days) SELECT tenant, team, generateUUIDv4(), "
        "request_id, ts, if(rowNumberInAllBlocks() % 2 = 0, {a:Float64}, {b:Float64}), '', 'reviewer', "
        "'key:test', '', '', '', '', 0 "
        "FROM requests WHERE experiment = {e:String} AND variant = {v:String} AND team = {team:String}",
        parameters={"team": team, "a": scores[0], "b": scores[1], "e": experiment, "v": variant},
    )


def variants(data: dict[str, Any], experiment: str) -> dict[str, dict[str, Any]]:
    (found,) = [e for e in data["experiments"] if e["name"] == experiment]
    return {v["variant"]: v for v in found["variants"]}


def test_a_clear_difference_is_significant_and_an_equal_split_is_not(live: LiveWarden) -> None:
    add_variant(live, "answer", "a", 1000, errors=20, scores=(0.4, 0.6))
    add_variant(live, "answer", "b", 1000, errors=150, scores=(0.8, 1.0))
    add_variant(live, "tone", "a", 1000, errors=50, scores=(0.4, 0.6))
    add_variant(live, "tone", "b", 1000, errors=50, scores=(0.4, 0.6))
    data = admin(live).get("/dashboards/experiments.json", params=WINDOW).json()
    assert data["tests"] == 4
    answer = variants(data, "answer")
    a, b = answer["a"], answer["b"]
    assert a["baseline"] and not b["baseline"]
    assert (a["requests"], a["error_rate"], b["error_rate"]) == (1000, 0.02, 0.15)
    assert a["refusal_rate"] == b["refusal_rate"] == 0.2
    assert a["cost_per_request_usd"] == pytest.approx(0.002)
    assert 140 <= b["latency_ms"]["p50"] <= 160 and 190 <= b["latency_ms"]["p95"] <= 200
    assert a["score"]["n"] == 1000 and a["score"]["mean"] == pytest.approx(0.5)
    assert b["score"]["mean"] == pytest.approx(0.9)
    low, high = b["score"]["ci95"]
    assert low < 0.9 < high and high - low == pytest.approx(
        2 * 1.96 * (0.1 * (1000 / 999) ** 0.5) / 1000**0.5
    )
    assert b["vs_baseline"]["error_rate"]["significant"] is True
    assert b["vs_baseline"]["mean_score"]["significant"] is True
    tone = variants(data, "tone")["b"]["vs_baseline"]
    assert tone["error_rate"]["significant"] is False and tone["mean_score"]["significant"] is False
    page = admin(live).get("/dashboards/experiments", params=WINDOW).text
    assert page.count('class="figure"') == 2 and "warden experiments promote" in page


def test_a_team_bound_viewer_sees_only_its_teams_rows(live: LiveWarden) -> None:
    add_variant(live, "answer", "a", 100, errors=10, scores=(0.2, 0.4))
    add_variant(live, "answer", "a", 300, errors=0, scores=(1.0, 1.0), team="beta")
    everyone = variants(admin(live).get("/dashboards/experiments.json", params=WINDOW).json(), "answer")
    assert everyone["a"]["requests"] == 400 and everyone["a"]["score"]["mean"] == pytest.approx(0.825)
    viewer = sign_in(live.root, "alpha-viewer")  # type: ignore[attr-defined]
    mine = variants(viewer.get("/dashboards/experiments.json", params=WINDOW).json(), "answer")
    assert mine["a"]["requests"] == 100 and mine["a"]["error_rate"] == 0.1
    assert mine["a"]["score"] == {
        "n": 100,
        "mean": pytest.approx(0.3),
        "ci95": pytest.approx(
            [0.3 - 1.96 * (0.01 * 100 / 99 / 100) ** 0.5, 0.3 + 1.96 * (0.01 * 100 / 99 / 100) ** 0.5]
        ),
        "variance": pytest.approx(0.01 * 100 / 99),
    }
    assert viewer.get("/dashboards/experiments.json", params={**WINDOW, "team": "beta"}).status_code == 403


def test_the_baseline_is_the_control_the_experiment_lists_first(live: LiveWarden) -> None:
    variants_ = [
        {"name": "zeta", "weight": 50, "model": "gpt-fake"},
        {"name": "alpha", "weight": 50, "model": "text-embed-fake"},
    ]
    live.services.experiments.create(
        "default",
        "order",
        {"kind": "model", "target": "gpt-fake", "variants": variants_},
        Change("cli:t", "default"),
    )
    add_variant(live, "order", "alpha", 100, errors=0, scores=(0.4, 0.6))
    add_variant(live, "order", "zeta", 100, errors=10, scores=(0.4, 0.6))
    add_variant(live, "unknown", "b", 10, errors=0, scores=(0.4, 0.6))
    add_variant(live, "unknown", "a", 10, errors=0, scores=(0.4, 0.6))
    data = admin(live).get("/dashboards/experiments.json", params=WINDOW).json()
    (order,) = [e for e in data["experiments"] if e["name"] == "order"]
    assert order["baseline"] == "zeta" and [v["variant"] for v in order["variants"]] == ["zeta", "alpha"]
    assert order["variants"][0]["baseline"] and "vs_baseline" in order["variants"][1]
    assert (order["state"], order["winner"]) == ("draft", None)
    (unknown,) = [e for e in data["experiments"] if e["name"] == "unknown"]
    assert unknown["baseline"] == "a" and unknown["state"] is None  # not in the store: first by name
    page = admin(live).get("/dashboards/experiments", params=WINDOW).text
    assert "<th>vs zeta</th>" in page and "State: draft" in page
