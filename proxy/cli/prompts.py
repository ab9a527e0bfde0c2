"""`warden prompts`: write versions, move labels, approve, compare and render prompts of the registry.

The command line is the machine's operator (as for `warden limits`): it acts as `cli:<login name>`, and
the approval rule compares that name with the version's author like any other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from proxy.cli.options import cli_change, config_option, read_settings, store_call, tenant_option

version_option = click.option("--version", "number", type=click.IntRange(1), help="A version number.")
label_option = click.option("--label", help="A label (production, staging, ...; 'latest': the newest).")


def _store(config_path: Path | None) -> Any:
    from proxy.db import make_engine, make_sessions
    from proxy.prompts.store import PromptStore

    settings = read_settings(config_path, resolve_secrets=False)
    sessions = make_sessions(make_engine(settings.storage.database_url))
    return PromptStore(sessions, require_approval=settings.prompts.require_approval)


def _pairs(values: tuple[str, ...], what: str) -> dict[str, Any]:
    """`name=value` options; a value that reads as JSON (a number, true, a list) is taken as such."""
    found: dict[str, Any] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint=what)
        try:
            found[name] = json.loads(raw)
        except ValueError:
            found[name] = raw
    return found


def _read_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise click.ClickException(
            f"{path}: expected a mapping with messages or text, variables, model, params"
        )
    unknown = sorted(set(loaded) - {"messages", "text", "variables", "model", "params"})
    if unknown:
        raise click.ClickException(f"{path}: unknown key {unknown[0]!r}")
    return loaded


@click.group()
def prompts() -> None:
    """Prompt templates: immutable versions, labels, approvals and diffs (see "Prompts")."""


@prompts.command("create")
@config_option
@tenant_option
@click.argument("name")
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML or JSON: messages (or text), variables, model, params.",
)
@click.option("--text", help="A single-text template (rendered as one user message).")
@click.option("--message", "messages", multiple=True, help="ROLE=TEMPLATE, once per message, in order.")
@click.option(
    "--variable", "variables", multiple=True, help="A declared variable (default: those the template reads)."
)
@click.option("--model", help="The model this prompt is written for.")
@click.option("--param", "params", multiple=True, help="NAME=VALUE, a model parameter (JSON values).")
def prompts_create(
    config_path: Path | None,
    tenant: str,
    name: str,
    path: Path | None,
    text: str | None,
    messages: tuple[str, ...],
    variables: tuple[str, ...],
    model: str | None,
    params: tuple[str, ...],
) -> None:
    """Write the next version of prompt NAME (created with its first version)."""
    from proxy.prompts.store import describe

    fields: dict[str, Any] = _read_file(path) if path is not None else {}
    if sum(bool(x) for x in (text, messages, "messages" in fields or "text" in fields)) != 1:
        raise click.UsageError("give the template once: --file, --text or --message")
    if text:
        fields["text"] = text
    if messages:
        fields["messages"] = []
        for item in messages:
            role, sep, content = item.partition("=")
            if not sep:
                raise click.BadParameter(f"{item!r} is not ROLE=TEMPLATE", param_hint="--message")
            fields["messages"].append({"role": role, "content": content})
    template = {key: fields.pop(key) for key in ("messages", "text") if key in fields}
    fields["template"] = template
    if variables:
        fields["variables"] = list(variables)
    if model:
        fields["model"] = model
    if params:
        fields["params"] = {**(fields.get("params") or {}), **_pairs(params, "--param")}
    version = store_call(lambda: _store(config_path).create_version(tenant, name, fields, cli_change(tenant)))
    click.echo(json.dumps(describe(version)))


@prompts.command("list")
@config_option
@tenant_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def prompts_list(config_path: Path | None, tenant: str, as_json: bool) -> None:
    """Every prompt of the tenant with its number of versions and its labels."""
    for summary in _store(config_path).summaries(tenant):
        line = {"prompt": summary.name, "versions": summary.versions, "labels": dict(summary.labels)}
        if as_json:
            click.echo(json.dumps(line))
        else:
            labels = " ".join(f"{label}={number}" for label, number in summary.labels.items())
            click.echo(f"{summary.name}  versions={summary.versions}  {labels}".rstrip())


@prompts.command("show")
@config_option
@tenant_option
@click.argument("name")
@version_option
@label_option
def prompts_show(
    config_path: Path | None, tenant: str, name: str, number: int | None, label: str | None
) -> None:
    """One version as JSON (default: the newest)."""
    from proxy.prompts.store import describe

    version = store_call(lambda: _store(config_path).get(tenant, name, label=label, number=number))
    click.echo(json.dumps(describe(version), indent=2))


@prompts.command("diff")
@config_option
@tenant_option
@click.argument("name")
@click.argument("old", type=click.IntRange(1))
@click.argument("new", type=click.IntRange(1))
def prompts_diff(config_path: Path | None, tenant: str, name: str, old: int, new: int) -> None:
    """A unified diff of versions OLD and NEW: template text, then variables, model and parameters."""
    click.echo(store_call(lambda: _store(config_path).diff(tenant, name, old, new)), nl=False)


@prompts.command("label")
@config_option
@tenant_option
@click.argument("name")
@click.argument("label")
@click.argument("number", metavar="VERSION", type=click.IntRange(1))
def prompts_label(config_path: Path | None, tenant: str, name: str, label: str, number: int) -> None:
    """Point LABEL of prompt NAME at VERSION (audited; some labels need an approval first)."""
    store_call(lambda: _store(config_path).set_label(tenant, name, label, number, cli_change(tenant)))
    click.echo(f"{name}: {label} -> version {number}")


@prompts.command("approve")
@config_option
@tenant_option
@click.argument("name")
@click.argument("number", metavar="VERSION", type=click.IntRange(1))
def prompts_approve(config_path: Path | None, tenant: str, name: str, number: int) -> None:
    """Approve VERSION of prompt NAME (audited; nobody approves a version they wrote)."""
    store_call(lambda: _store(config_path).approve(tenant, name, number, cli_change(tenant)))
    click.echo(f"{name}: version {number} approved")


@prompts.command("render")
@config_option
@tenant_option
@click.argument("name")
@version_option
@label_option
@click.option("--var", "values", multiple=True, help="NAME=VALUE, a variable (JSON values).")
@click.option(
    "--vars-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A JSON object of variables.",
)
def prompts_render(
    config_path: Path | None,
    tenant: str,
    name: str,
    number: int | None,
    label: str | None,
    values: tuple[str, ...],
    vars_file: Path | None,
) -> None:
    """Render a version with variables, printing the messages as JSON."""
    variables: dict[str, Any] = {}
    if vars_file is not None:
        try:
            loaded = json.loads(vars_file.read_text())
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"{vars_file}: {exc}") from None
        if not isinstance(loaded, dict):
            raise click.ClickException(f"{vars_file}: expected a JSON object of variables")
        variables.update(loaded)
    variables.update(_pairs(values, "--var"))
    version = store_call(lambda: _store(config_path).get(tenant, name, label=label, number=number))
    messages = store_call(lambda: version.render(variables))
    click.echo(json.dumps([{"role": m.role, "content": m.content} for m in messages], indent=2))
