"""What every `warden` command group shares: the --config option."""

from __future__ import annotations

from pathlib import Path

import click

from proxy.settings import CONFIG_ENV

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=CONFIG_ENV,
    help=f"YAML config file (default: ${CONFIG_ENV}, else embedded defaults).",
)
