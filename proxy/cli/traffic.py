"""`warden limits` and `warden budgets`: set, list and delete the rules the admin API manages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from proxy.cli.options import config_option
from proxy.settings import BUDGET_PERIODS, LIMIT_SCOPES, load_settings

tenant_option = click.option("--tenant", default="default", show_default=True, help="Tenant.")
scope_option = click.option("--scope", type=click.Choice(LIMIT_SCOPES), required=True)
match_option = click.option(
    "--match", default="*", show_default=True, help="Key id, team or project; '*': each one separately."
)


def _store(config_path: Path | None) -> Any:
    from proxy.db import make_engine, make_sessions
    from proxy.traffic.rules_store import RuleStore

    settings = load_settings(config_path, resolve_secrets=False)
    return RuleStore(make_sessions(make_engine(settings.storage.database_url)))


def _change(tenant: str) -> Any:
    import getpass

    from proxy.identity.directory import Change

    return Change(actor=f"cli:{getpass.getuser()}", tenant=tenant, ip="local")


def _call(work: Any) -> Any:
    from proxy.identity.directory import IdentityError

    try:
        return work()
    except IdentityError as exc:
        raise click.ClickException(str(exc)) from None


def _print(rows: list[Any], kind: type, as_json: bool) -> None:
    from proxy.traffic.rules_store import describe

    for stored in rows:
        if isinstance(stored.rule, kind):
            line = describe(stored)
            click.echo(json.dumps(line) if as_json else "  ".join(f"{k}={v}" for k, v in line.items()))


@click.group()
def limits() -> None:
    """Requests and tokens per minute, and requests at once, per key, team, project or tenant."""


@limits.command("set")
@config_option
@tenant_option
@scope_option
@match_option
@click.option(
    "--model", default="*", show_default=True, help="Only this model's requests ('*': all together)."
)
@click.option("--rpm", type=click.IntRange(0), default=0, help="Requests per minute (0: none).")
@click.option("--tpm", type=click.IntRange(0), default=0, help="Tokens per minute (0: none).")
@click.option("--concurrent", type=click.IntRange(0), default=0, help="Requests at once (0: none).")
def limits_set(
    config_path: Path | None,
    tenant: str,
    scope: str,
    match: str,
    model: str,
    rpm: int,
    tpm: int,
    concurrent: int,
) -> None:
    """Set (or replace) a limit; every replica applies it within seconds."""
    from proxy.traffic.rules_store import describe

    fields = {
        "scope": scope,
        "match": match,
        "model": model,
        "rpm": rpm,
        "tpm": tpm,
        "concurrent": concurrent,
    }
    stored = _call(lambda: _store(config_path).set_limit(tenant, fields, _change(tenant)))
    click.echo(json.dumps(describe(stored)))


@limits.command("list")
@config_option
@tenant_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def limits_list(config_path: Path | None, tenant: str, as_json: bool) -> None:
    """The limits set through the admin API or CLI (config-file limits are in the file)."""
    from proxy.settings import LimitRule

    _print(_store(config_path).list(tenant), LimitRule, as_json)


@limits.command("delete")
@config_option
@tenant_option
@click.argument("rule_id")
def limits_delete(config_path: Path | None, tenant: str, rule_id: str) -> None:
    _call(lambda: _store(config_path).delete(tenant, rule_id, _change(tenant)))
    click.echo(f"deleted {rule_id}")


@click.group()
def budgets() -> None:
    """USD per day, month or in total, per key, team, project or tenant (hard and soft thresholds)."""


@budgets.command("set")
@config_option
@tenant_option
@scope_option
@match_option
@click.option("--period", type=click.Choice(BUDGET_PERIODS), required=True)
@click.option("--hard-usd", type=click.FloatRange(0), default=0.0, help="Refuse beyond this (0: none).")
@click.option("--soft-usd", type=click.FloatRange(0), default=0.0, help="Flag beyond this (0: none).")
def budgets_set(
    config_path: Path | None,
    tenant: str,
    scope: str,
    match: str,
    period: str,
    hard_usd: float,
    soft_usd: float,
) -> None:
    """Set (or replace) a budget; every replica applies it within seconds."""
    from proxy.traffic.rules_store import describe

    fields = {"scope": scope, "match": match, "period": period, "hard_usd": hard_usd, "soft_usd": soft_usd}
    stored = _call(lambda: _store(config_path).set_budget(tenant, fields, _change(tenant)))
    click.echo(json.dumps(describe(stored)))


@budgets.command("list")
@config_option
@tenant_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def budgets_list(config_path: Path | None, tenant: str, as_json: bool) -> None:
    """The budgets set through the admin API or CLI (spend: GET /api/budgets or the cost page)."""
    from proxy.settings import BudgetRule

    _print(_store(config_path).list(tenant), BudgetRule, as_json)


@budgets.command("delete")
@config_option
@tenant_option
@click.argument("rule_id")
def budgets_delete(config_path: Path | None, tenant: str, rule_id: str) -> None:
    _call(lambda: _store(config_path).delete(tenant, rule_id, _change(tenant)))
    click.echo(f"deleted {rule_id}")
