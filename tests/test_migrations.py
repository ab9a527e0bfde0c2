"""Alembic: one head, upgrade and downgrade on SQLite and PostgreSQL, models match migrations."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from proxy.db import Base
from proxy.migrate import alembic_config, sql_heads, upgrade_sql


def test_one_head() -> None:
    assert len(sql_heads()) == 1


def _check_round_trip(url: str) -> None:
    assert upgrade_sql(url) == sql_heads()[0]
    engine = create_engine(url)
    try:
        assert {"tenants", "teams", "api_keys", "alembic_version"} <= set(inspect(engine).get_table_names())
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        command.downgrade(alembic_config(url), "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        command.upgrade(alembic_config(url), "head")
        assert "api_keys" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_sqlite_upgrade_downgrade(tmp_path: Path) -> None:
    _check_round_trip(f"sqlite:///{tmp_path / 'nested' / 'warden.db'}")


@pytest.mark.postgres
def test_postgresql_upgrade_downgrade(postgres_url: str) -> None:
    _check_round_trip(postgres_url)


@pytest.mark.postgres
def test_keys_on_postgresql(postgres_url: str) -> None:
    from proxy.db import make_engine, make_sessions
    from proxy.identity.keys import KeyStore

    upgrade_sql(postgres_url)
    engine = make_engine(postgres_url)
    store = KeyStore(make_sessions(engine))
    info, plaintext = store.create("alpha", models=["m"])
    principal = store.authenticate(plaintext)
    assert principal is not None and principal.key_id == info.id and principal.models == frozenset({"m"})
    assert store.revoke(info.id) and store.authenticate(plaintext) is None
    engine.dispose()
