"""Dashboards on real ClickHouse: numbers match the data, scope cannot be escaped by URL, bad input
gets clear messages, drift finds the injected change, and names from requests cannot inject script."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from analytics import feedback
from analytics.feedback import FeedbackRow
from tests.support import (
    ADMIN_TOKEN,
    SINCE,
    UNTIL,
    WINDOW,
    LiveWarden,
    insert_findings,
    insert_request_row,
    sign_in,
)


def admin(live: LiveWarden) -> httpx.Client:
    return httpx.Client(base_url=live.root, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)  # type: ignore[attr-defined]


def test_overview_and_cost_match_the_rows(seeded: LiveWarden) -> None:
    client = admin(seeded)
    overview = client.get("/dashboards/overview.json", params=WINDOW).json()
    (truth,) = seeded.rows(
        "SELECT count(), countIf(status >= 400), sum(ifNull(cost_micro_usd, 0)), "
        "countIf(cost_micro_usd IS NULL AND status < 400) "
        "FROM requests"
    )
    assert overview["requests"] == truth[0] == 40_000
    assert overview["errors"] == truth[1]
    assert overview["spend_usd"] == pytest.approx(truth[2] / 1e6)
    assert overview["unpriced_requests"] == truth[3] > 0  # the unpriced model is never shown as $0
    assert 150 < overview["latency_ms"]["p50"] < overview["latency_ms"]["p95"] < overview["latency_ms"]["p99"]
    assert {r["name"] for r in overview["top_teams"]} == {"alpha", "beta", "gamma", "delta"}
    cost = client.get("/dashboards/cost.json", params=WINDOW).json()
    local = next(r for r in cost["by_model"] if r["name"] == "local")
    assert local["spend_usd"] == 0 and local["unpriced"] > 0
    assert cost["projected_month_usd"] == pytest.approx(cost["total_usd"] / 10 * 30)


def test_every_page_renders_with_its_figures(seeded: LiveWarden) -> None:
    client = admin(seeded)
    for page, figures in (
        ("overview", 2),
        ("latency", 3),
        ("cost", 4),
        ("drift", 3),
        ("behaviour", 9),
        ("experiments", 2),
        ("audit", 0),
    ):
        html = client.get(f"/dashboards/{page}", params=WINDOW)
        assert html.status_code == 200, (page, html.text[:300])
        assert html.text.count('class="figure"') == figures
        assert "/dashboards/plotly.min.js" in html.text and "cdn" not in html.text.lower()
    assert (
        client.get("/dashboards/plotly.min.js").headers["content-type"].startswith("application/javascript")
    )


def test_behaviour_counts_policy_findings(seeded: LiveWarden) -> None:
    data = admin(seeded).get("/dashboards/behaviour.json", params=WINDOW).json()
    (truth,) = seeded.rows(
        "SELECT countIf(decision = 'mask'), countIf(decision = 'block'), count() FROM requests"
    )
    findings = {(f["kind"], f["action"]): f["findings"] for f in data["findings"]}
    assert findings == {("EMAIL_ADDRESS", "mask"): truth[0], ("secret:openai_key", "block"): truth[1]}
    requests = sum(r["requests"] for r in data["policy_rates"])
    pii = sum(r["pii_rate"] * r["requests"] for r in data["policy_rates"])
    assert requests == truth[2] and round(pii) == truth[0]  # a secret is not PII
    assert {r["decision"] for r in data["decisions"]} == {"allow", "mask", "block"}


def test_behaviour_shows_injection_and_toxicity_by_model_and_team(seeded: LiveWarden) -> None:
    """The synthetic traffic has no injection or toxicity findings: only these rows are counted."""
    clickhouse, at = seeded.services.clickhouse(), SINCE + timedelta(hours=5)
    override, toxic = "injection:instruction_override", "toxicity:toxicity"
    insert_findings(clickhouse, "alpha", "gpt-4o", at, [(override, "monitor", 2)])
    insert_findings(clickhouse, "beta", "claude-x", at, [(toxic, "flag", 1), (override, "block", 1)])

    def shown(data: dict[str, Any], by: str) -> dict[tuple[str, str, str], int]:
        rows = data["injection_toxicity"][f"by_{by}"]
        return {(r["name"], r["kind"], r["action"]): r["findings"] for r in rows}

    everyone = admin(seeded).get("/dashboards/behaviour.json", params=WINDOW).json()
    assert shown(everyone, "model") == {
        ("gpt-4o", override, "monitor"): 2,
        ("claude-x", toxic, "flag"): 1,
        ("claude-x", override, "block"): 1,
    }
    assert shown(everyone, "team") == {
        ("alpha", override, "monitor"): 2,
        ("beta", toxic, "flag"): 1,
        ("beta", override, "block"): 1,
    }
    viewer = sign_in(seeded.root, "alpha-viewer")  # type: ignore[attr-defined]
    mine = viewer.get("/dashboards/behaviour.json", params=WINDOW).json()
    assert shown(mine, "team") == {("alpha", override, "monitor"): 2}
    assert shown(mine, "model") == {("gpt-4o", override, "monitor"): 2}
    page = viewer.get("/dashboards/behaviour", params=WINDOW).text
    assert (
        "Injection and toxicity findings by model" in page
        and "Injection and toxicity findings by team" in page
    )
    assert f"{override} (monitor)" in page and toxic not in page  # beta's finding is not on alpha's page
    quiet = viewer.get("/dashboards/behaviour", params={**WINDOW, "model": "claude-x"}).text
    assert "No injection or toxicity findings in this range" in quiet


def test_behaviour_joins_feedback_to_requests_in_scope(seeded: LiveWarden) -> None:
    """Feedback rows on seeded requests: the mean per model and source matches ClickHouse's own join,
    and a team-bound viewer sees only the feedback on its team's requests."""
    clickhouse = seeded.services.clickhouse()
    picked = seeded.rows(
        "SELECT request_id, team, ts FROM requests WHERE model = 'gpt-4o' ORDER BY request_id LIMIT 6"
    )
    assert {team for _, team, _ in picked} >= {"alpha"}
    rows = [
        FeedbackRow(
            tenant="default",
            team=team,
            feedback_id=uuid.UUID(int=n + 1),
            request_id=request_id,
            ts=ts,
            score=float(n),
            label="",
            source="reviewer" if n % 2 else "end_user",
            actor="key:test",
            subject_hash="",
            key_id="",
            nonce=b"",
            ciphertext=b"",
            retention_days=0,
        )
        for n, (request_id, team, ts) in enumerate(picked)
    ]
    for row in rows:
        feedback.insert(clickhouse, row)

    def means(data: dict[str, Any]) -> dict[tuple[str, str], float]:
        return {(r["model"], r["source"]): r["mean_score"] for r in data["feedback"]}

    def expected(teams: set[str]) -> dict[tuple[str, str], float]:
        kept = [r for r in rows if r.team in teams]
        return {
            ("gpt-4o", source): sum(r.score or 0 for r in kept if r.source == source)
            / len([r for r in kept if r.source == source])
            for source in {r.source for r in kept}
        }

    everyone = admin(seeded).get("/dashboards/behaviour.json", params=WINDOW).json()
    assert means(everyone) == pytest.approx(expected({r.team for r in rows}))
    viewer = sign_in(seeded.root, "alpha-viewer")  # type: ignore[attr-defined]
    assert means(viewer.get("/dashboards/behaviour.json", params=WINDOW).json()) == pytest.approx(
        expected({"alpha"})
    )
    assert "Mean feedback score by model" in viewer.get("/dashboards/behaviour", params=WINDOW).text


def test_drift_finds_the_injected_change(seeded: LiveWarden) -> None:
    middle = SINCE + (UNTIL - SINCE) / 2
    params = {
        "since": middle.isoformat(),
        "until": UNTIL.isoformat(),
        "baseline_since": SINCE.isoformat(),
        "baseline_until": middle.isoformat(),
    }
    data = admin(seeded).get("/dashboards/drift.json", params=params).json()
    models = {m["model"]: m for m in data["models"]}
    assert models["gpt-4o"]["metrics"]["latency_ms"]["psi"] > 0.25
    assert any("latency_ms: major shift" in c for c in models["gpt-4o"]["changed"])
    assert models["claude-x"]["rates"]["refusal_rate"]["p_value"] < 0.01
    assert models["claude-x"]["rates"]["refusal_rate"]["alarm"]
    assert any(c.startswith("refusal_rate up") for c in models["claude-x"]["changed"])
    assert models["gpt-4o-mini"]["changed"] == [], "no false alarm where nothing changed"
    daily = models["gpt-4o"]["latency_psi_series"]
    assert len(daily) == 5 and all(point["psi"] > 0.25 for point in daily)
    assert all(point["psi"] < 0.1 for point in models["gpt-4o-mini"]["latency_psi_series"])
    thin = (
        admin(seeded)
        .get(
            "/dashboards/drift.json",
            params={
                **params,
                "baseline_until": SINCE.isoformat(),
                "baseline_since": (SINCE - timedelta(days=1)).isoformat(),
            },
        )
        .json()
    )
    assert all(m["status"].startswith("not enough data") for m in thin["models"])


def test_scope_cannot_be_escaped_by_url(seeded: LiveWarden) -> None:
    viewer = sign_in(seeded.root, "alpha-viewer")  # type: ignore[attr-defined]
    mine = viewer.get("/dashboards/overview.json", params=WINDOW).json()
    assert [r["name"] for r in mine["top_teams"]] == ["alpha"] and mine["requests"] == 10_000
    escape = viewer.get("/dashboards/overview.json", params={**WINDOW, "team": "beta"})
    assert escape.status_code == 403 and "outside your scope" in escape.json()["error"]["message"]
    assert viewer.get("/dashboards/cost", params={**WINDOW, "team": "alpha,beta"}).status_code == 403
    assert viewer.get("/dashboards/audit.json", params=WINDOW).json()["admin_log"] is None


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"since": "yesterday"}, "ISO 8601"),
        ({"since": "2026-11-10T00:00:00Z", "until": "2026-11-01T00:00:00Z"}, "before until"),
        ({"since": "2020-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "limited to 400 days"),
        ({"range": "forever"}, "range must be one of"),
        ({"model": "x' OR 1=1 --"}, "not a valid name"),
        (
            {"baseline_since": "2026-11-15T00:00:00Z", "baseline_until": "2026-11-14T00:00:00Z"},
            "baseline_since",
        ),
        (
            {"baseline_since": "2020-01-01T00:00:00Z", "baseline_until": "2026-11-01T00:00:00Z"},
            "the baseline (baseline_since to baseline_until) is limited to 400 days",
        ),
    ],
)
def test_bad_filters_get_clear_messages(seeded: LiveWarden, params: dict[str, str], fragment: str) -> None:
    client = admin(seeded)
    page = "drift" if "baseline_since" in params else "overview"
    response = client.get(f"/dashboards/{page}.json", params=params)
    assert response.status_code == 400 and fragment in response.json()["error"]["message"]
    html = client.get(f"/dashboards/{page}", params=params)
    assert html.status_code == 400 and fragment.split()[0] in html.text


def test_unknown_names_are_just_empty(seeded: LiveWarden) -> None:
    data = admin(seeded).get("/dashboards/overview.json", params={**WINDOW, "model": "no-such-model"}).json()
    assert data["requests"] == 0 and data["error_rate"] is None


def test_names_from_requests_cannot_inject_script(seeded: LiveWarden) -> None:
    hostile = "</script><script>alert(1)</script>"
    insert_request_row(seeded, hostile, SINCE + timedelta(hours=1), 404)
    html = admin(seeded).get("/dashboards/overview", params=WINDOW).text
    assert hostile not in html and "<script>alert(1)" not in html
    data = admin(seeded).get("/dashboards/overview.json", params=WINDOW).json()
    assert hostile in json.dumps(data)  # kept as data, never as markup


def test_caller_chosen_names_are_plain_text_in_figures(seeded: LiveWarden) -> None:
    """plotly renders `<a href>` in labels: a name from a request must show as text, not as a link."""
    linked = '<a href="https://evil.example">click</a>'
    insert_request_row(seeded, linked, SINCE + timedelta(hours=1))
    html = admin(seeded).get("/dashboards/overview", params=WINDOW).text
    assert "evil.example" in html  # the row is shown...
    assert '<a href=\\"https://evil.example' not in html and "\\u003ca href" not in html  # ...as text
    assert "&lt;a href" in html
