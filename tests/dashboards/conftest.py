"""The dashboards' world: a live Warden over ten days of synthetic traffic (with a drift injected half
way), two teams and a viewer bound to one of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from analytics.access import Binding
from analytics.synthetic import generate
from proxy.identity.directory import Change
from proxy.upstreams.fake import FakeUpstream
from tests.support import ADMIN_TOKEN, PASSWORD, SINCE, UNTIL, LiveWarden, make_settings


@pytest.fixture
def seeded(tmp_path: Path, fake_upstream: FakeUpstream) -> Iterator[LiveWarden]:
    live = LiveWarden(make_settings(tmp_path, fake_upstream.base_url, auth={"admin_token": ADMIN_TOKEN}))
    generate(live.services.clickhouse(), 40_000, SINCE, UNTIL, drift_at=0.5)
    setup = Change("cli:test", "default")
    for team in ("alpha", "beta"):
        live.services.directory.create_team(team, setup)
    live.services.directory.create_user("alpha-viewer", PASSWORD, setup, (Binding("viewer", "alpha"),))
    live.root = live.base_url.removesuffix("/v1")  # type: ignore[attr-defined]
    yield live
    live.stop()
