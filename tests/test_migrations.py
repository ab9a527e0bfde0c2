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


def _check_usernames_per_tenant(url: str) -> None:
    """0004: people made before it keep signing in; a name is unique per tenant, enforced by the database."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from proxy.db import make_engine, make_sessions
    from proxy.identity.directory import Change, Directory, IdentityError

    password = "correct-horse-battery"
    command.upgrade(alembic_config(url), "0003")
    engine = make_engine(url)
    try:
        directory = Directory(make_sessions(engine))
        directory.create_user("alice", password, Change("cli:test", "default"))
        upgrade_sql(url)
        assert directory.check_password("alice", "default", password) is not None
        directory.create_user("alice", password + "!", Change("cli:test", "acme"))
        assert directory.check_password("alice", "acme", password + "!") is not None
        assert directory.check_password("alice", "acme", password) is None
        with pytest.raises(IdentityError) as refused:
            directory.create_user("alice", password, Change("cli:test", "acme"))
        assert refused.value.status == 409
        with engine.begin() as connection, pytest.raises(IntegrityError):
            connection.execute(
                text(
                    "INSERT INTO users (id, tenant_id, username, password_hash, disabled, created_at) "
                    "SELECT 'dup', tenant_id, username, password_hash, disabled, created_at FROM users "
                    "WHERE id = (SELECT MIN(id) FROM users)"
                )
            )
    finally:
        engine.dispose()


def test_usernames_per_tenant_on_sqlite(tmp_path: Path) -> None:
    _check_usernames_per_tenant(f"sqlite:///{tmp_path / 'warden.db'}")


@pytest.mark.postgres
def test_usernames_per_tenant_on_postgresql(postgres_url: str) -> None:
    _check_usernames_per_tenant(postgres_url)
