"""Figures people read: latencies in the unit a person uses."""

from __future__ import annotations

import pytest

from dashboards.views import duration


@pytest.mark.parametrize(
    ("ms", "shown"),
    [(3.456, "3.5 ms"), (345.688, "346 ms"), (1227.097, "1.23 s"), (9989.153, "9.99 s"), (150_000, "2.5 min"),
     (None, "—"), (True, "—")],
)  # fmt: skip
def test_latencies_read_in_human_units(ms: object, shown: str) -> None:
    assert duration(ms) == shown
