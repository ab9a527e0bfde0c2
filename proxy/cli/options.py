"""What every `warden` command shares: the process set-up, the --config option, reading the settings."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from proxy.settings import CONFIG_ENV, ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from proxy.identity.directory import Change

T = TypeVar("T")


def prepare_process() -> None:
    """The file mode and logging every `warden` command runs with."""
    # Everything Warden writes (metadata DB, spool, ClickHouse data, keys, exports) is for its own
    # user only: hashes, ciphertext and metrics are still nobody else's business.
    os.umask(0o077)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Per-request INFO lines from these libraries cost time on the hot path and say nothing new.
    for noisy in ("httpx", "httpcore", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # During a ClickHouse outage these log every retry; the sink logs one line per failed attempt.
    # clickhouse-connect sets `urllib3` back to WARNING when a worker imports it, hence its pool too.
    for noisy in ("urllib3", "urllib3.connectionpool", "clickhouse_connect"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=CONFIG_ENV,
    help=f"YAML config file (default: ${CONFIG_ENV}, else embedded defaults).",
)


def read_settings(config_path: Path | None, *, resolve_secrets: bool = True) -> Settings:
    """The validated settings, or a command-line error naming the file, line and key."""
    try:
        return load_settings(config_path, resolve_secrets=resolve_secrets)
    except ConfigError as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from None


tenant_option = click.option("--tenant", default="default", show_default=True, help="Tenant.")


def cli_change(tenant: str) -> Change:
    """Who a registry command acts as: the machine's operator, `cli:<login name>`, as `warden limits`
    does, so the approval rule and the audit log compare and show that name like any other."""
    import getpass

    from proxy.identity.directory import Change

    return Change(actor=f"cli:{getpass.getuser()}", tenant=tenant, ip="local")


def store_call(work: Callable[[], T]) -> T:
    """Run a store call, a refusal (404, 409, a validation error) becoming a one-line CLI error."""
    from proxy.identity.directory import IdentityError
    from proxy.prompts.render import RenderError

    try:
        return work()
    except (IdentityError, RenderError) as exc:
        raise click.ClickException(str(exc)) from None
