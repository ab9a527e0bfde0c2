"""Dashboard queries on real chDB: the drift page's false alarms stay rare where nothing changed, and the
behaviour page puts injection and toxicity findings under the right model and team, within scope."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from analytics import queries, schema
from analytics.access import Scope
from analytics.clickhouse import connect
from analytics.synthetic import generate
from tests.support import SINCE, UNTIL, insert_findings


def test_benjamini_hochberg_matches_a_worked_example() -> None:
    # Sorted: 0.005 * 4/1, 0.01 * 4/2, 0.03 * 4/3, 0.04 * 4/4, then the running minimum from the top.
    adjusted = queries.benjamini_hochberg([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert queries.benjamini_hochberg([]) == []
    assert queries.benjamini_hochberg([0.5, 0.9]) == pytest.approx([0.9, 0.9])


def test_a_rate_change_must_be_large_enough() -> None:
    assert queries.large_enough(0.02, 0.08)
    assert not queries.large_enough(0.030, 0.033)  # 0.3 points: certain in a big tenant, not worth a look
    assert not queries.large_enough(0.40, 0.42)  # 2 points, but only 5% of a large rate
    assert queries.large_enough(0.0, 0.01)


def test_drift_raises_at_most_one_alarm_on_twenty_unchanged_data_sets(tmp_path: Path) -> None:
    """Twenty data sets, one tenant each, nothing injected. With p < 0.01 per test and no correction,
    about one page in seven alarmed (measured: 4 of 20 unseeded data sets, 17 of 100 seeded ones)."""
    client = connect(f"chdb:///{tmp_path / 'clickhouse'}")
    schema.upgrade(client)
    middle = SINCE + (UNTIL - SINCE) / 2
    alarmed, nominal, dismissed = [], 0, 0
    try:
        for seed in range(20):
            tenant = f"seed{seed}"
            # 8,000 rows: 1,000 a model and window, so PSI's sampling noise stays well under 0.1.
            generate(client, 8_000, SINCE, UNTIL, tenant=tenant, drift_at=1.0, seed=seed)
            data = queries.drift(
                client, queries.Filters(middle, UNTIL), queries.Filters(SINCE, middle), Scope(tenant, None)
            )
            assert [m["status"] for m in data["models"]] == ["ok"] * 4
            assert data["thresholds"]["rate_tests"] == 16
            if any(m["changed"] for m in data["models"]):
                alarmed.append(seed)
            rates = [r for m in data["models"] for r in m["rates"].values()]
            assert all({"q_value", "alarm"} <= set(r) for r in rates)
            nominal += sum(r["p_value"] < 0.01 and not r["alarm"] for r in rates)
            dismissed += sum(len(m["dismissed"]) for m in data["models"])
    finally:
        client.close()
    assert len(alarmed) <= 1, f"alarms where nothing changed, seeds {alarmed}"
    assert dismissed == nominal  # what the correction held back is shown, not hidden


@pytest.mark.parametrize(
    "args",
    [
        {"until": "0001-01-01T00:00:00Z"},  # minus the default day: an OverflowError (a 500) before
        {"since": "0001-01-01T00:00:00+14:00", "until": "0001-01-02T00:00:00Z"},
        {"since": "9999-12-30T00:00:00Z", "until": "9999-12-31T23:59:59-14:00"},
        {"since": "1969-12-31T00:00:00Z", "until": "1970-01-02T00:00:00Z"},
    ],
)
def test_filters_refuse_times_outside_what_the_log_can_hold(args: dict[str, str]) -> None:
    with pytest.raises(queries.FilterError, match="between 1970 and 2200") as refused:
        queries.parse_filters(args)
    assert refused.value.status == 400


def test_times_at_the_edges_of_the_log_are_accepted() -> None:
    filters = queries.parse_filters({"since": "1970-01-01T00:00:00Z", "until": "1970-01-02T00:00:00+00:00"})
    assert filters.hours == 24
    assert queries.parse_time("2200-01-01T00:00:00Z", "until").year == 2200


def _safety(data: dict[str, Any], by: str) -> dict[tuple[str, str, str], int]:
    rows = data["injection_toxicity"][f"by_{by}"]
    return {(r["name"], r["kind"], r["action"]): r["findings"] for r in rows}


def test_injection_and_toxicity_findings_by_model_and_team(tmp_path: Path) -> None:
    client = connect(f"chdb:///{tmp_path / 'clickhouse'}")
    schema.upgrade(client)
    at = SINCE + timedelta(hours=3)
    try:
        override, jailbreak, toxic = (
            "injection:instruction_override",
            "injection:roleplay",
            "toxicity:toxicity",
        )
        insert_findings(client, "alpha", "gpt-4o", at, [(override, "monitor", 2), (toxic, "flag", 1)])
        insert_findings(client, "alpha", "gpt-4o", at + timedelta(hours=30), [(override, "monitor", 1)])
        insert_findings(client, "alpha", "claude-x", at, [(jailbreak, "monitor", 1)])
        insert_findings(client, "beta", "claude-x", at, [(jailbreak, "block", 1), (toxic, "flag", 3)])
        # Other kinds stay out: PII, secrets, and a failed scanner (`error:injection` is no injection).
        insert_findings(
            client, "beta", "gpt-4o", at, [("EMAIL_ADDRESS", "mask", 5), ("error:injection", "error", 1)]
        )
        window = queries.Filters(SINCE, UNTIL)

        everyone = queries.behaviour(client, window, Scope("default", None))
        assert _safety(everyone, "model") == {
            ("gpt-4o", override, "monitor"): 3,
            ("gpt-4o", toxic, "flag"): 1,
            ("claude-x", jailbreak, "monitor"): 1,
            ("claude-x", jailbreak, "block"): 1,
            ("claude-x", toxic, "flag"): 3,
        }
        assert _safety(everyone, "team") == {
            ("alpha", override, "monitor"): 3,
            ("alpha", toxic, "flag"): 1,
            ("alpha", jailbreak, "monitor"): 1,
            ("beta", jailbreak, "block"): 1,
            ("beta", toxic, "flag"): 3,
        }
        families = {(r["kind"], r["family"]) for r in everyone["injection_toxicity"]["by_model"]}
        assert families == {(override, "injection"), (jailbreak, "injection"), (toxic, "toxicity")}

        alpha_only = Scope("default", frozenset({"alpha"}))
        alpha = queries.behaviour(client, window, alpha_only)
        assert _safety(alpha, "team") == {
            k: v for k, v in _safety(everyone, "team").items() if k[0] == "alpha"
        }
        assert _safety(alpha, "model") == {
            ("gpt-4o", override, "monitor"): 3,
            ("gpt-4o", toxic, "flag"): 1,
            ("claude-x", jailbreak, "monitor"): 1,
        }
        with pytest.raises(queries.FilterError, match="outside your scope"):
            queries.behaviour(client, queries.Filters(SINCE, UNTIL, teams=("beta",)), alpha_only)

        quiet = queries.behaviour(
            client, queries.Filters(SINCE - timedelta(days=2), SINCE), Scope("default", None)
        )
        assert quiet["injection_toxicity"]["by_model"] == quiet["injection_toxicity"]["by_team"] == []
    finally:
        client.close()
