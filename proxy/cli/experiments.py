"""`warden experiments`: create, list, show, start, stop, promote and retire traffic splits for a
prompt or a model. The command line acts as `cli:<login name>`, as `warden prompts` does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from proxy.cli.options import cli_change, config_option, read_settings, store_call, tenant_option


def _store(config_path: Path | None) -> Any:
    from proxy.db import make_engine, make_sessions
    from proxy.experiments.store import ExperimentStore
    from proxy.prompts.store import PromptStore

    settings = read_settings(config_path, resolve_secrets=False)
    sessions = make_sessions(make_engine(settings.storage.database_url))
    prompts = PromptStore(sessions, require_approval=settings.prompts.require_approval)
    # The models a running Warden with this config routes: what its router would accept.
    models = frozenset(m for up in settings.upstreams for m in up.models)
    return ExperimentStore(sessions, prompts, models.__contains__)


def _variant(item: str, kind: str) -> dict[str, Any]:
    """NAME=WEIGHT:ARM, the arm a version number, `label:NAME` (prompts) or a model name."""
    name, sep, rest = item.partition("=")
    weight, sep2, arm = rest.partition(":")
    if not sep or not sep2 or not name or not arm or not weight.isdigit():
        raise click.BadParameter(f"{item!r} is not NAME=WEIGHT:ARM", param_hint="--variant")
    found: dict[str, Any] = {"name": name, "weight": int(weight)}
    if kind == "model":
        found["model"] = arm
    elif arm.startswith("label:"):
        found["label"] = arm.removeprefix("label:")
    elif arm.isdigit():
        found["version"] = int(arm)
    else:
        raise click.BadParameter(f"{item!r}: a prompt arm is a version number or label:NAME")
    return found


def _show(info: Any) -> None:
    from proxy.experiments.store import describe

    click.echo(json.dumps(describe(info), indent=2))


@click.group()
def experiments() -> None:
    """Traffic splits between prompt versions or models (see "Experiments")."""


@experiments.command("create")
@config_option
@tenant_option
@click.argument("name")
@click.option("--prompt", help="Split the requests that name this prompt.")
@click.option("--model", help="Split the requests that ask for this model.")
@click.option(
    "--variant",
    "variants",
    multiple=True,
    required=True,
    help="NAME=WEIGHT:ARM, once per variant; ARM is a version number or label:NAME (--prompt) or a "
    "model (--model); weights are percentages summing to 100.",
)
@click.option(
    "--sticky",
    default="user",
    show_default=True,
    help="user (the request's `user` field), header:<name>, or request (no stickiness).",
)
def experiments_create(
    config_path: Path | None,
    tenant: str,
    name: str,
    prompt: str | None,
    model: str | None,
    variants: tuple[str, ...],
    sticky: str,
) -> None:
    """Create experiment NAME as a draft (start it with `warden experiments start`)."""
    if (prompt is None) == (model is None):
        raise click.UsageError("give --prompt or --model, one of them")
    kind, target = ("prompt", prompt) if prompt is not None else ("model", model)
    fields = {
        "kind": kind,
        "target": target,
        "sticky": sticky,
        "variants": [_variant(item, kind) for item in variants],
    }
    _show(store_call(lambda: _store(config_path).create(tenant, name, fields, cli_change(tenant))))


@experiments.command("list")
@config_option
@tenant_option
def experiments_list(config_path: Path | None, tenant: str) -> None:
    """Every experiment of the tenant, one line each."""
    for info in _store(config_path).experiments(tenant):
        split = " ".join(f"{v.name}={v.weight}" for v in info.variants)
        winner = f"  winner={info.winner}" if info.winner else ""
        click.echo(f"{info.name}  {info.state}  {info.kind}:{info.target}  {split}{winner}")


@experiments.command("show")
@config_option
@tenant_option
@click.argument("name")
def experiments_show(config_path: Path | None, tenant: str, name: str) -> None:
    """One experiment as JSON."""
    _show(store_call(lambda: _store(config_path).get(tenant, name)))


@experiments.command("start")
@config_option
@tenant_option
@click.argument("name")
def experiments_start(config_path: Path | None, tenant: str, name: str) -> None:
    """Start splitting traffic (a running Warden picks it up within seconds)."""
    _show(store_call(lambda: _store(config_path).start(tenant, name, cli_change(tenant))))


@experiments.command("stop")
@config_option
@tenant_option
@click.argument("name")
def experiments_stop(config_path: Path | None, tenant: str, name: str) -> None:
    """Stop splitting traffic: requests get what they ask for again."""
    _show(store_call(lambda: _store(config_path).stop(tenant, name, cli_change(tenant))))


@experiments.command("promote")
@config_option
@tenant_option
@click.argument("name")
@click.argument("variant")
@click.option(
    "--label", default="production", show_default=True, help="The prompt label to move (prompt experiments)."
)
def experiments_promote(config_path: Path | None, tenant: str, name: str, variant: str, label: str) -> None:
    """Make VARIANT the winner and end the split: a prompt variant gets --label; a model experiment
    routes its model to VARIANT's until `warden experiments retire`."""
    _show(store_call(lambda: _store(config_path).promote(tenant, name, variant, cli_change(tenant), label)))


@experiments.command("retire")
@config_option
@tenant_option
@click.argument("name")
def experiments_retire(config_path: Path | None, tenant: str, name: str) -> None:
    """End a promoted model experiment's route: requests get the model they ask for again."""
    _show(store_call(lambda: _store(config_path).retire(tenant, name, cli_change(tenant))))
