"""`warden migrate`: bring the SQL metadata database and the ClickHouse schema to the current head."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from analytics import schema
from analytics.clickhouse import connect


@dataclass(frozen=True, slots=True)
class MigrationReport:
    sql_head: str
    clickhouse_applied: tuple[str, ...]


def alembic_config(database_url: str) -> Config:
    root = Path(str(resources.files("migrations")))
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root))
    # ConfigParser interpolation would choke on '%' in passwords.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def sql_heads(database_url: str = "sqlite://") -> list[str]:
    return list(ScriptDirectory.from_config(alembic_config(database_url)).get_heads())


def upgrade_sql(database_url: str) -> str:
    if database_url.startswith("sqlite:///"):
        Path(database_url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), "head")
    return sql_heads(database_url)[0]


def upgrade_clickhouse(clickhouse_url: str) -> list[str]:
    client = connect(clickhouse_url, create_database=True)
    try:
        return [f"{m.version:04d}_{m.name}" for m in schema.upgrade(client)]
    finally:
        client.close()


def upgrade_all(database_url: str, clickhouse_url: str) -> MigrationReport:
    head = upgrade_sql(database_url)
    applied = upgrade_clickhouse(clickhouse_url)
    return MigrationReport(head, tuple(applied))
