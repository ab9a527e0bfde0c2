"""The hash-chained audit log: every kind of tampering is detected, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from analytics.access import Binding
from proxy.cli.main import main
from proxy.db import make_engine, make_sessions
from proxy.identity import audit
from proxy.identity.directory import Change, Directory
from proxy.migrate import upgrade_sql
from tests.support import write_config


def filled(url: str) -> sessionmaker:
    upgrade_sql(url)
    db = make_sessions(make_engine(url))
    directory = Directory(db)
    change = Change("cli:test", "default", "127.0.0.1")
    directory.create_team("alpha", change)
    directory.create_user("ana", "a-long-password-1", change, (Binding("analyst", "alpha"),))
    directory.grant("ana", Binding("viewer"), change)
    directory.set_disabled("ana", True, change)
    return db


def tamper_cases(db: sessionmaker) -> None:
    try:
        _tamper_cases(db)
    finally:
        db.kw["bind"].dispose()


def _tamper_cases(db: sessionmaker) -> None:
    assert audit.verify(db) == audit.ChainReport(True, 4)
    with db.begin() as session:
        session.execute(text("UPDATE audit_log SET actor = 'cli:someone-else' WHERE seq = 2"))
    report = audit.verify(db)
    assert not report.ok and report.seq == 2 and "modified" in report.problem
    with db.begin() as session:
        session.execute(text("UPDATE audit_log SET actor = 'cli:test' WHERE seq = 2"))
    assert audit.verify(db).ok
    with db.begin() as session:
        session.execute(text("DELETE FROM audit_log WHERE seq = 4"))
    report = audit.verify(db)
    assert not report.ok and "ends at row 3 but 4 were written" in report.problem


def test_tampering_is_detected_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    db = filled(url)
    entries = audit.entries(db)
    assert [e.action for e in entries] == ["user.disable", "role.grant", "user.create", "team.create"]
    assert entries[1].before == ["analyst@alpha"] and entries[1].after == ["analyst@alpha", "viewer@tenant"]
    _tamper_cases(db)
    with db.begin() as session:
        session.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    assert audit.verify(db).problem == "row 2 is missing"
    db.kw["bind"].dispose()


@pytest.mark.postgres
def test_tampering_is_detected_on_postgresql(postgres_url: str) -> None:
    tamper_cases(filled(postgres_url))


def test_cli_verify_demonstration(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"storage": {"database_url": f"sqlite:///{tmp_path / 'c.db'}"}})
    db = filled(f"sqlite:///{tmp_path / 'c.db'}")
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", "verify", "--config", str(config)])
    assert ok.exit_code == 0 and "intact: 4 rows" in ok.output
    with db.begin() as session:
        session.execute(text("UPDATE audit_log SET target = 'user:mallory' WHERE seq = 3"))
    db.kw["bind"].dispose()
    bad = runner.invoke(main, ["audit", "verify", "--config", str(config)])
    assert bad.exit_code == 1 and "TAMPERED: row 3 was modified" in bad.output


def test_a_tenant_verifies_the_chain_without_seeing_other_tenants(tmp_path: Path) -> None:
    """The chain spans tenants; a tenant's report counts its own rows and names no other tenant's row."""
    db = filled(f"sqlite:///{tmp_path / 'a.db'}")
    Directory(db).create_team("omega", Change("cli:test", "other"))
    assert audit.verify(db) == audit.ChainReport(True, 5)
    assert audit.verify(db, tenant="default") == audit.ChainReport(True, 4)
    assert audit.verify(db, tenant="other") == audit.ChainReport(True, 1)
    with db.begin() as session:
        session.execute(text("UPDATE audit_log SET actor = 'cli:someone-else' WHERE seq = 2"))
    theirs = audit.verify(db, tenant="other")
    assert not theirs.ok and theirs.seq is None and "another tenant" in theirs.problem
    ours = audit.verify(db, tenant="default")
    assert not ours.ok and ours.seq == 2 and "modified" in ours.problem
    db.kw["bind"].dispose()
