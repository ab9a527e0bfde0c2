"""The synthetic generator on real chDB: the same seed writes the same rows, another seed other rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from analytics import schema
from analytics.clickhouse import connect
from analytics.synthetic import generate
from tests.support import SINCE, UNTIL


@pytest.fixture
def clickhouse(tmp_path: Path) -> Iterator[Client]:
    client = connect(f"chdb:///{tmp_path / 'clickhouse'}")
    schema.upgrade(client)
    yield client
    client.close()


def written(client: Client, seed: int) -> list[tuple[object, ...]]:
    """The rows one call writes, into an emptied table."""
    client.command("TRUNCATE TABLE requests")
    generate(client, 3_000, SINCE, UNTIL, drift_at=0.5, seed=seed)
    return list(client.query("SELECT * FROM requests ORDER BY ts, request_id").result_rows)


def test_the_same_seed_writes_the_same_rows(clickhouse: Client) -> None:
    first = written(clickhouse, seed=7)
    assert len(first) == 3_000
    assert written(clickhouse, seed=7) == first
    other = written(clickhouse, seed=8)
    assert len(other) == 3_000 and other != first
    columns = [c[0] for c in clickhouse.query("DESCRIBE TABLE requests").result_rows]
    for name in ("request_id", "status", "latency_ms", "prompt_tokens", "refusal", "decision"):
        i = columns.index(name)
        differing = sum(a[i] != b[i] for a, b in zip(first, other, strict=True))
        assert differing > 0, f"{name} does not depend on the seed"
    assert not {row[columns.index("request_id")] for row in first} & {
        row[columns.index("request_id")] for row in other
    }
