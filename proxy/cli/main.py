"""The `warden` command line: serve, migrate, keys, check-config and local helpers."""

from __future__ import annotations

import contextlib
import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from analytics.access import ROLES
from proxy.cli.migrate import clickhouse_url
from proxy.cli.options import config_option, prepare_process, read_settings
from proxy.settings import data_locations


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Warden: an OpenAI-compatible proxy that governs and records LLM traffic."""
    prepare_process()


@main.command("check-config")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def check_config(path: Path) -> None:
    """Validate a config file; exit 1 with the file, line and key of the first problem."""
    settings = read_settings(path)
    models = sorted({m for up in settings.upstreams for m in up.models})
    click.echo(f"{path}: OK ({len(settings.upstreams)} upstreams, {len(models)} models)")
    for line in data_locations(settings):
        click.echo(f"  {line}")


# -- keys --------------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Create, list and revoke virtual API keys."""


def _key_store(config_path: Path | None) -> Any:
    from proxy.db import make_engine, make_sessions
    from proxy.identity.keys import KeyStore

    settings = read_settings(config_path, resolve_secrets=False)
    return KeyStore(make_sessions(make_engine(settings.storage.database_url)), cache_seconds=0)


@keys.command("create")
@config_option
@click.option("--team", required=True, help="Team the key belongs to (created if new).")
@click.option("--name", default="default", show_default=True, help="A label for the key.")
@click.option("--project", default="", help="Project the key's traffic is attributed to.")
@click.option("--models", help="Comma-separated models the key may use (default: all routed models).")
@click.option("--expires-in-days", type=click.IntRange(1, 3650), help="Expire the key after this many days.")
@click.option("--tenant", default="default", show_default=True, help="Tenant of the team.")
@click.option(
    "--cache/--no-cache",
    default=None,
    help="Turn the response cache on (or off) for this key's requests (default: as the policy says).",
)
def keys_create(
    config_path: Path | None,
    team: str,
    name: str,
    project: str,
    models: str | None,
    expires_in_days: int | None,
    tenant: str,
    cache: bool | None,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    from proxy.db import utcnow

    store = _key_store(config_path)
    model_list = [m.strip() for m in models.split(",") if m.strip()] if models is not None else None
    expires = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    info, plaintext = _identity_call(
        lambda: store.create(
            team,
            name=name,
            project=project,
            models=model_list,
            expires_at=expires,
            tenant=tenant,
            change=_cli_change(tenant),
            cache=cache,
        )
    )
    click.echo(plaintext)
    click.echo(f"created {info.id} for team {info.team} (store the key now: it is not shown again)", err=True)


@keys.command("list")
@config_option
@click.option("--team", help="Only this team's keys.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def keys_list(config_path: Path | None, team: str | None, as_json: bool) -> None:
    """List keys (never the secret itself)."""
    rows = _key_store(config_path).list(team=team)
    if as_json:
        for info in rows:
            click.echo(
                json.dumps(
                    {
                        "id": info.id,
                        "prefix": info.prefix,
                        "name": info.name,
                        "tenant": info.tenant,
                        "team": info.team,
                        "project": info.project,
                        "models": info.models,
                        "created_at": info.created_at.isoformat(),
                        "expires_at": info.expires_at.isoformat() if info.expires_at else None,
                        "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
                        "cache": info.cache,
                    }
                )
            )
        return
    click.echo(f"{'ID':<18} {'PREFIX':<12} {'TEAM':<16} {'NAME':<16} {'STATUS':<8} MODELS")
    for info in rows:
        status = "revoked" if info.revoked_at else "active"
        models = ",".join(info.models) if info.models is not None else "*"
        click.echo(f"{info.id:<18} {info.prefix:<12} {info.team:<16} {info.name:<16} {status:<8} {models}")


@keys.command("revoke")
@config_option
@click.argument("key_id")
def keys_revoke(config_path: Path | None, key_id: str) -> None:
    """Revoke a key by id (see `warden keys list`)."""
    if not _key_store(config_path).revoke(key_id, _cli_change("default")):
        raise click.ClickException(f"no key with id {key_id!r}")
    click.echo(f"revoked {key_id}")


# -- people, teams, roles, audit ---------------------------------------------------------------


def _directory(config_path: Path | None) -> Any:
    from proxy.db import make_engine, make_sessions
    from proxy.identity.directory import Directory

    settings = read_settings(config_path, resolve_secrets=False)
    return Directory(make_sessions(make_engine(settings.storage.database_url)))


def _cli_change(tenant: str) -> Any:
    import getpass

    from proxy.identity.directory import Change

    return Change(actor=f"cli:{getpass.getuser()}", tenant=tenant, ip="local")


def _identity_call(call: Any) -> Any:
    from proxy.identity.directory import IdentityError

    try:
        return call()
    except IdentityError as exc:
        raise click.ClickException(str(exc)) from None


tenant_option = click.option("--tenant", default="default", show_default=True, help="Tenant.")
team_option = click.option("--team", help="Bind the role in this team only (default: the whole tenant).")


@main.group()
def users() -> None:
    """Create, list, disable and enable people who use the dashboards and admin API."""


@users.command("create")
@config_option
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), help="Initial role.")
@team_option
@tenant_option
def users_create(
    config_path: Path | None, username: str, role: str | None, team: str | None, tenant: str
) -> None:
    """Create USERNAME; the password comes from $WARDEN_PASSWORD or a prompt."""
    from analytics.access import Binding

    password = os.environ.get("WARDEN_PASSWORD") or click.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )
    bindings = (Binding(role, team),) if role else ()
    directory = _directory(config_path)
    user = _identity_call(lambda: directory.create_user(username, password, _cli_change(tenant), bindings))
    click.echo(f"created user {user.username} ({', '.join(_roles(user)) or 'no role'})")


def _roles(user: Any) -> list[str]:
    return [f"{b.role}@{b.team or 'tenant'}" for b in user.bindings]


@users.command("list")
@config_option
@tenant_option
def users_list(config_path: Path | None, tenant: str) -> None:
    """List users with their roles."""
    click.echo(f"{'USERNAME':<24} {'STATUS':<9} ROLES")
    for user in _directory(config_path).users(tenant):
        click.echo(
            f"{user.username:<24} {'disabled' if user.disabled else 'active':<9} {' '.join(_roles(user))}"
        )


@users.command("disable")
@config_option
@click.argument("username")
@tenant_option
def users_disable(config_path: Path | None, username: str, tenant: str) -> None:
    """Disable USERNAME and end their sessions."""
    directory = _directory(config_path)
    _identity_call(lambda: directory.set_disabled(username, True, _cli_change(tenant)))
    click.echo(f"disabled {username}")


@users.command("enable")
@config_option
@click.argument("username")
@tenant_option
def users_enable(config_path: Path | None, username: str, tenant: str) -> None:
    """Enable USERNAME again."""
    directory = _directory(config_path)
    _identity_call(lambda: directory.set_disabled(username, False, _cli_change(tenant)))
    click.echo(f"enabled {username}")


@main.group()
def teams() -> None:
    """Create and list teams."""


@teams.command("create")
@config_option
@click.argument("name")
@tenant_option
def teams_create(config_path: Path | None, name: str, tenant: str) -> None:
    """Create team NAME."""
    directory = _directory(config_path)
    _identity_call(lambda: directory.create_team(name, _cli_change(tenant)))
    click.echo(f"created team {name}")


@teams.command("list")
@config_option
@tenant_option
def teams_list(config_path: Path | None, tenant: str) -> None:
    """List teams."""
    for name in _directory(config_path).teams(tenant):
        click.echo(name)


@main.group(help=f"Grant and revoke roles ({', '.join(ROLES)}), tenant-wide or in one team.")
def roles() -> None:
    pass


@roles.command("grant")
@config_option
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
@team_option
@tenant_option
def roles_grant(config_path: Path | None, username: str, role: str, team: str | None, tenant: str) -> None:
    """Grant ROLE to USERNAME."""
    from analytics.access import Binding

    directory = _directory(config_path)
    user = _identity_call(lambda: directory.grant(username, Binding(role, team), _cli_change(tenant)))
    click.echo(f"{username}: {' '.join(_roles(user))}")


@roles.command("revoke")
@config_option
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
@team_option
@tenant_option
def roles_revoke(config_path: Path | None, username: str, role: str, team: str | None, tenant: str) -> None:
    """Revoke ROLE from USERNAME."""
    from analytics.access import Binding

    directory = _directory(config_path)
    user = _identity_call(lambda: directory.revoke(username, Binding(role, team), _cli_change(tenant)))
    click.echo(f"{username}: {' '.join(_roles(user)) or 'no role'}")


@main.group("audit")
def audit_group() -> None:
    """The hash-chained admin audit log."""


@audit_group.command("verify")
@config_option
def audit_verify(config_path: Path | None) -> None:
    """Recompute the audit chain; exit 1 naming the first edited, inserted or deleted row."""
    from proxy.identity import audit

    report = audit.verify(_directory(config_path).sessions)
    if not report.ok:
        raise click.ClickException(f"audit log TAMPERED: {report.problem} (checked {report.rows} rows)")
    click.echo(f"audit log intact: {report.rows} rows")


@audit_group.command("list")
@config_option
@click.option("--tenant", help="Only this tenant's rows.")
@click.option(
    "--system", is_flag=True, help="Only the system log: sign-ins naming no account, floods from an address."
)
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
def audit_list(config_path: Path | None, tenant: str | None, system: bool, limit: int) -> None:
    """Print the newest audit rows as JSON lines, newest first (every tenant's, unless narrowed).

    The system log is in no tenant's view, so this is where the installation's operator reads it."""
    from proxy.identity import audit

    if system and tenant is not None:
        raise click.UsageError("give at most one of --tenant and --system")
    rows = audit.entries(
        _directory(config_path).sessions, tenant=audit.SYSTEM if system else tenant, limit=limit
    )
    for row in rows:
        click.echo(
            json.dumps(
                {
                    "seq": row.seq,
                    "at": row.at.isoformat(),
                    "tenant": row.tenant or None,
                    "actor": row.actor,
                    "action": row.action,
                    "target": row.target,
                    "outcome": row.outcome,
                    "ip": row.ip,
                    "before": row.before,
                    "after": row.after,
                }
            )
        )


# -- transcripts: keys, erasure, exports --------------------------------------------------------


class _Runtime:
    """What the data commands need: settings, metadata DB, key ring and a ClickHouse client.

    While `warden serve` runs on embedded chDB, the client goes through its local ClickHouse process;
    with `storage.embedded_clickhouse: inprocess`, stop `warden serve` first (one process per data
    directory), or use the admin API's equivalents (`/api/erasure`, `/api/exports`)."""

    def __init__(self, config_path: Path | None, clickhouse: bool = True) -> None:
        from analytics.clickhouse import connect
        from proxy.compliance.crypto import CryptoError, KeyRing, load_kek
        from proxy.db import make_engine, make_sessions

        self.settings = read_settings(config_path, resolve_secrets=False)
        self.db = make_sessions(make_engine(self.settings.storage.database_url))
        try:
            self.keyring = KeyRing(self.db, load_kek(self.settings.crypto.kek))
        except CryptoError as exc:
            raise click.ClickException(str(exc)) from None
        self._clickhouse = None
        if clickhouse:
            try:
                self._clickhouse = connect(clickhouse_url(self.settings))
            except Exception as exc:
                raise click.ClickException(
                    f"cannot open ClickHouse ({type(exc).__name__}); with in-process chDB stop `warden serve`"
                    " first or use the admin API"
                ) from None

    @property
    def clickhouse(self) -> Any:
        return self._clickhouse


@main.group("keys-crypto")
def keys_crypto() -> None:
    """Data keys that encrypt transcripts."""


@keys_crypto.command("rotate")
@config_option
@tenant_option
def keys_crypto_rotate(config_path: Path | None, tenant: str) -> None:
    """Start a new data-key version for TENANT; older versions keep decrypting what they sealed."""
    from proxy.identity import audit

    runtime = _Runtime(config_path, clickhouse=False)
    key_id = runtime.keyring.rotate(tenant)
    change = _cli_change(tenant)
    audit.record(
        runtime.db,
        tenant=tenant,
        actor=change.actor,
        action="crypto.rotate",
        target=f"key:{key_id}",
        ip=change.ip,
    )
    click.echo(f"new data key {key_id} for tenant {tenant} (reaches running servers within 30 s)")


@keys_crypto.command("status")
@config_option
def keys_crypto_status(config_path: Path | None) -> None:
    """Data keys per tenant."""
    rows = _Runtime(config_path, clickhouse=False).keyring.status()
    click.echo(f"{'TENANT':<20} {'VERSIONS':>8} {'CURRENT':>8} {'SUBJECT KEYS':>13}")
    for row in rows:
        click.echo(
            f"{row['tenant']:<20} {row['tenant_key_versions']:>8} {row['current_version']:>8} "
            f"{row['subject_keys']:>13}"
        )


@main.command()
@config_option
@click.option("--subject", help="End-user id (the `user` field of requests) to erase.")
@click.option("--tenant", default="default", show_default=True)
@click.option("--all-of-tenant", is_flag=True, help="Erase every transcript and row of the tenant.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def erase(config_path: Path | None, subject: str | None, tenant: str, all_of_tenant: bool, yes: bool) -> None:
    """Crypto-shred a data subject's (or a tenant's) keys and delete their rows."""
    from proxy.compliance.erasure import erase as run_erase

    if bool(subject) == all_of_tenant:
        raise click.UsageError("give exactly one of --subject USER_ID or --all-of-tenant")
    what = f"subject {subject!r} of tenant {tenant}" if subject else f"ALL data of tenant {tenant}"
    if not yes:
        click.confirm(f"Erase {what}? This cannot be undone", abort=True)
    runtime = _Runtime(config_path)
    report = run_erase(
        runtime.keyring,
        runtime.clickhouse,
        runtime.db,
        tenant=tenant,
        subject=subject,
        actor=_cli_change(tenant).actor,
        ip="local",
        exports_dir=Path(runtime.settings.exports.dir),
    )
    click.echo(
        f"erased {what}: {report.keys_destroyed} keys destroyed, {report.requests_deleted} request rows, "
        f"{report.transcripts_deleted} transcripts and {report.exports_deleted} exports deleted"
    )


def _when(value: str, name: str) -> datetime:
    from analytics.queries import FilterError, parse_time

    try:
        return parse_time(value, name, assume_utc=False)
    except FilterError as exc:
        raise click.BadParameter(str(exc)) from None


@main.group("export", invoke_without_command=True)
@config_option
@click.option("--since", help="Start (ISO 8601 with timezone), inclusive.")
@click.option("--until", help="End (ISO 8601 with timezone), exclusive.")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv", "parquet"]), default="jsonl", show_default=True
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Empty or new directory.")
@click.option("--team", multiple=True, help="Only these teams (repeatable); default the whole tenant.")
@click.option("--tenant", default="default", show_default=True)
@click.option("--transcripts", is_flag=True, help="Include decrypted transcripts.")
@click.pass_context
def export_cmd(
    ctx: click.Context,
    config_path: Path | None,
    since: str | None,
    until: str | None,
    fmt: str,
    out: Path | None,
    team: tuple[str, ...],
    tenant: str,
    transcripts: bool,
) -> None:
    """Write a signed audit export: requests, audit log and optionally transcripts."""
    if ctx.invoked_subcommand is not None:
        return
    if not (since and until and out):
        raise click.UsageError("--since, --until and --out are required")
    from analytics.access import Scope
    from proxy.compliance.exports import ExportError, ExportSpec, export, signing_key

    spec = ExportSpec(
        tenant,
        _when(since, "--since"),
        _when(until, "--until"),
        fmt,
        Scope(tenant, frozenset(team)) if team else None,
        transcripts,
        audit_log=True,  # the CLI runs with the deployment's own rights: the whole tenant's log
    )
    runtime = _Runtime(config_path)
    change = _cli_change(tenant)
    with click.progressbar(length=0, label="exporting", show_pos=True) as bar:

        def progress(_name: str, rows: int) -> None:
            bar.length = (bar.length or 0) + rows
            bar.update(rows)

        try:
            manifest = export(
                spec,
                out,
                clickhouse=runtime.clickhouse,
                db=runtime.db,
                keyring=runtime.keyring,
                key=signing_key(Path(runtime.settings.exports.signing_key)),
                actor=change.actor,
                ip=change.ip,
                progress=progress,
            )
        except ExportError as exc:
            raise click.ClickException(str(exc)) from None
    for entry in manifest["files"]:
        click.echo(f"{entry['name']}: {entry['rows']} rows, sha256 {entry['sha256'][:16]}…")
    click.echo(f"signed manifest: {out / 'manifest.json'} (+ manifest.sig)")


@export_cmd.command("verify")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The deployment's export-signing .pub file (proves origin, not only integrity).",
)
def export_verify(directory: Path, public_key: Path | None) -> None:
    """Check an export's signature, file hashes and row counts."""
    from proxy.compliance.exports import verify

    problems = verify(directory, public_key.read_bytes() if public_key else None)
    if problems:
        raise click.ClickException("export does NOT verify: " + "; ".join(problems))
    click.echo(
        f"{directory}: signature and every file hash verify"
        + ("" if public_key else " (integrity only: pass --public-key to prove origin)")
    )


@export_cmd.command("finetune")
@config_option
@click.option("--since", required=True)
@click.option("--until", required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="JSONL file.")
@click.option("--style", type=click.Choice(["chat", "completion"]), default="chat", show_default=True)
@click.option("--team", multiple=True)
@click.option("--model", help="Only this model's exchanges.")
@click.option(
    "--min-score",
    type=click.FloatRange(-1e6, 1e6),
    help="Only exchanges whose mean feedback score is at least this (unscored ones are left out).",
)
@click.option("--tenant", default="default", show_default=True)
def export_finetune(
    config_path: Path | None,
    since: str,
    until: str,
    out: Path,
    style: str,
    team: tuple[str, ...],
    model: str | None,
    min_score: float | None,
    tenant: str,
) -> None:
    """Write stored transcripts as fine-tuning JSONL ({"messages": [...]} or {"prompt", "completion"})."""
    from analytics.access import Scope
    from proxy.compliance.exports import ExportSpec, finetune
    from proxy.identity import audit

    spec = ExportSpec(
        tenant,
        _when(since, "--since"),
        _when(until, "--until"),
        scope=Scope(tenant, frozenset(team)) if team else None,
        transcripts=True,
    )
    spec.check()
    runtime = _Runtime(config_path)
    count = finetune(
        spec,
        out,
        clickhouse=runtime.clickhouse,
        keyring=runtime.keyring,
        style=style,
        model=model,
        min_score=min_score,
    )
    change = _cli_change(tenant)
    audit.record(
        runtime.db,
        tenant=tenant,
        actor=change.actor,
        action="export.finetune",
        target=str(out),
        ip=change.ip,
        after={"records": count, "since": since, "until": until, "model": model, "min_score": min_score},
    )
    click.echo(f"wrote {count} records to {out}")


# -- local helpers -----------------------------------------------------------------------------


@main.command("fake-upstream")
@click.option("--port", type=click.IntRange(0, 65535), default=9000, show_default=True)
@click.option("--delay-ms", type=float, default=0.0, show_default=True, help="Delay before each reply.")
@click.option(
    "--chunks", type=click.IntRange(1, 10_000), default=8, show_default=True, help="Events per stream."
)
@click.option("--words", type=click.IntRange(0, 100_000), default=0, help="Fixed reply length (0 = echo).")
@click.option("--chunk-delay-ms", type=float, default=0.0, show_default=True, help="Delay between events.")
def fake_upstream(port: int, delay_ms: float, chunks: int, words: int, chunk_delay_ms: float) -> None:
    """Run a fake OpenAI- and Anthropic-compatible upstream on loopback (for demos and benchmarks)."""
    from proxy.upstreams.fake import FakeBehaviour, FakeUpstream

    behaviour = FakeBehaviour(delay_ms=delay_ms, chunks=chunks, words=words, chunk_delay_ms=chunk_delay_ms)
    server = FakeUpstream("127.0.0.1", port, behaviour)
    click.echo(f"fake upstream at {server.base_url}")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


@main.command("clickhouse-serve")
@click.option(
    "--path", type=click.Path(file_okay=False, path_type=Path), required=True, help="chDB data dir."
)
@click.option("--port", type=click.IntRange(0, 65535), default=8123, show_default=True)
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Password of user `default` (made, mode 0600, if absent). Default: PATH.password beside the "
    "data directory; $WARDEN_CLICKHOUSE_PASSWORD wins.",
)
def clickhouse_serve(path: Path, port: int, password_file: Path | None) -> None:
    """Serve a chDB data directory as a ClickHouse HTTP endpoint on 127.0.0.1, behind a password."""
    from analytics import chdb_server

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    extra = ["--password-file", str(password_file)] if password_file else []
    chdb_server.main(["--path", str(path), "--port", str(port), *extra])


def _register() -> None:
    from proxy.cli.experiments import experiments
    from proxy.cli.migrate import migrate
    from proxy.cli.policies import models, policy
    from proxy.cli.prompts import prompts
    from proxy.cli.serve import serve
    from proxy.cli.traffic import budgets, limits

    main.add_command(serve)
    main.add_command(migrate)
    main.add_command(policy)
    main.add_command(models)
    main.add_command(limits)
    main.add_command(budgets)
    main.add_command(prompts)
    main.add_command(experiments)


_register()

if __name__ == "__main__":
    main()
