"""The `warden` command line, in process, on real SQLite."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from proxy.cli.main import main
from tests.support import write_config


def config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path,
        {
            "storage": {
                "database_url": f"sqlite:///{tmp_path / 'w.db'}",
                "clickhouse_url": f"chdb:///{tmp_path / 'ch'}",
            }
        },
    )


def test_check_config(tmp_path: Path) -> None:
    runner = CliRunner()
    good = runner.invoke(main, ["check-config", str(config(tmp_path))])
    assert good.exit_code == 0 and "OK" in good.output
    # Where the data lives, resolved: a newcomer sees which directory `chdb:///…` means.
    ch = (tmp_path / "ch").resolve()
    assert f"chDB in {ch}, which `warden serve` serves to its workers as a local ClickHouse" in good.output
    assert f"port in {ch}.port, password in {ch}.password" in good.output
    assert f"metadata database: sqlite:///{(tmp_path / 'w.db').resolve()}" in good.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  port: -1\n")
    result = runner.invoke(main, ["check-config", str(bad)])
    assert result.exit_code == 1 and "bad.yaml:2: server.port" in result.output


def test_keys_lifecycle(tmp_path: Path) -> None:
    from proxy.migrate import upgrade_sql

    upgrade_sql(f"sqlite:///{tmp_path / 'w.db'}")
    cfg = str(config(tmp_path))
    runner = CliRunner()
    created = runner.invoke(
        main,
        ["keys", "create", "--config", cfg, "--team", "alpha", "--models", "a,b", "--expires-in-days", "30"],
    )
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[0]
    assert key.startswith("wdn-")
    listed = runner.invoke(main, ["keys", "list", "--config", cfg, "--json"])
    assert '"team": "alpha"' in listed.output and key not in listed.output
    key_id = listed.output.split('"id": "')[1].split('"')[0]
    assert runner.invoke(main, ["keys", "revoke", "--config", cfg, key_id]).exit_code == 0
    assert "revoked" in runner.invoke(main, ["keys", "list", "--config", cfg]).output
    missing = runner.invoke(main, ["keys", "revoke", "--config", cfg, "key_nope"])
    assert missing.exit_code == 1 and "no key with id" in missing.output
    bad = runner.invoke(main, ["keys", "create", "--config", cfg, "--team", "bad team"])
    assert bad.exit_code == 1 and "team must be" in bad.output
    # Tenant names are checked wherever a tenant is made: none can be the audit log's system log ("").
    nameless = runner.invoke(main, ["teams", "create", "--config", cfg, "omega", "--tenant", ""])
    assert nameless.exit_code == 1 and "tenant must be" in nameless.output


def test_audit_list_shows_the_system_log(tmp_path: Path) -> None:
    """Rows of no tenant (sign-ins naming no account) are read by the installation's operator here."""
    from proxy.db import make_engine, make_sessions
    from proxy.identity import audit
    from proxy.migrate import upgrade_sql

    url = f"sqlite:///{tmp_path / 'w.db'}"
    upgrade_sql(url)
    db = make_sessions(make_engine(url))
    audit.record(db, tenant=audit.SYSTEM, actor="anonymous:ghost", action="login", target="user:ghost")
    audit.record(db, tenant="acme", actor="cli:test", action="team.create", target="team:omega")
    cfg = str(config(tmp_path))
    runner = CliRunner()
    system = runner.invoke(main, ["audit", "list", "--config", cfg, "--system"])
    assert system.exit_code == 0, system.output
    assert [json.loads(line)["target"] for line in system.output.splitlines()] == ["user:ghost"]
    everything = runner.invoke(main, ["audit", "list", "--config", cfg])
    rows = [json.loads(line) for line in everything.output.splitlines()]
    assert [(r["tenant"], r["target"]) for r in rows] == [("acme", "team:omega"), (None, "user:ghost")]
    acme = runner.invoke(main, ["audit", "list", "--config", cfg, "--tenant", "acme"])
    assert [json.loads(line)["tenant"] for line in acme.output.splitlines()] == ["acme"]
