"""ClickHouse schema migrations: numbered .sql files, applied in order and recorded once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from clickhouse_connect.driver.client import Client

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
LEDGER = "warden_schema_migrations"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def available(directory: Path | None = None) -> list[Migration]:
    """The migrations shipped with Warden (or found in `directory`), in version order."""
    root = directory or Path(str(resources.files("migrations") / "clickhouse"))
    found: list[Migration] = []
    for path in sorted(root.iterdir()):
        match = _FILE.match(path.name)
        if not match:
            continue
        found.append(Migration(int(match.group(1)), match.group(2), _statements(path.read_text())))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate ClickHouse migration numbers in {root}")
    return found


def _statements(sql: str) -> tuple[str, ...]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return tuple(s.strip() for s in "\n".join(lines).split(";") if s.strip())


def applied(client: Client) -> set[int]:
    _ensure_ledger(client)
    return {row[0] for row in client.query(f"SELECT version FROM {LEDGER}").result_rows}


def upgrade(client: Client, directory: Path | None = None) -> list[Migration]:
    """Apply every migration not yet recorded; return those applied now."""
    done = applied(client)
    ran: list[Migration] = []
    for migration in available(directory):
        if migration.version in done:
            continue
        for statement in migration.statements:
            client.command(statement)
        client.insert(LEDGER, [[migration.version, migration.name]], column_names=["version", "name"])
        ran.append(migration)
    return ran


def pending(client: Client, directory: Path | None = None) -> list[Migration]:
    done = applied(client)
    return [m for m in available(directory) if m.version not in done]


def _ensure_ledger(client: Client) -> None:
    client.command(
        f"CREATE TABLE IF NOT EXISTS {LEDGER} (version UInt32, name String, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY version"
    )
