"""ClickHouse migrations: applied once, recorded, idempotent, on chDB and over HTTP."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from analytics import schema
from analytics.clickhouse import connect


def test_upgrade_is_recorded_and_idempotent(clickhouse_url: str) -> None:
    client = connect(clickhouse_url, create_database=True)
    try:
        first = schema.upgrade(client)
        assert [m.version for m in first] == [m.version for m in schema.available()]
        assert schema.upgrade(client) == []
        assert schema.pending(client) == []
        columns = {row[0]: row[1] for row in client.query("DESCRIBE TABLE requests").result_rows}
        assert columns["request_id"] == "UUID" and columns["ts"] == "DateTime64(3, 'UTC')"
        assert columns["cost_micro_usd"] == "Nullable(Int64)"
        # No column may hold prompt or response text.
        assert not {"prompt", "response", "messages", "content"} & set(columns)
    finally:
        client.close()


def test_new_migration_files_are_picked_up(tmp_path: Path, clickhouse_url: str) -> None:
    src = Path(str(resources.files("migrations") / "clickhouse"))
    for migration in schema.available():
        (tmp_path / f"{migration.version:04d}_{migration.name}.sql").write_text(
            (src / f"{migration.version:04d}_{migration.name}.sql").read_text()
        )
    (tmp_path / "9999_extra.sql").write_text("-- a comment\nCREATE TABLE extra (a UInt8) ENGINE = Memory;\n")
    (tmp_path / "README.txt").write_text("ignored")
    client = connect(clickhouse_url, create_database=True)
    try:
        applied = schema.upgrade(client, tmp_path)
        assert applied[-1].version == 9999
        assert client.query("EXISTS TABLE extra").result_rows == [(1,)]
    finally:
        client.close()
