"""What every `warden` command group shares: the --config option and reading the settings."""

from __future__ import annotations

from pathlib import Path

import click

from proxy.settings import CONFIG_ENV, ConfigError, Settings, load_settings

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
