"""`warden migrate`; also run alone (`python -m proxy.cli.migrate`) by `warden serve`, which thus skips
the import of every other command (seconds: the policy commands load presidio)."""

from __future__ import annotations

from pathlib import Path

import click

from proxy.cli.options import config_option, prepare_process, read_settings
from proxy.settings import Settings, local_clickhouse


@click.command()
@config_option
def migrate(config_path: Path | None) -> None:
    """Upgrade the metadata database (Alembic) and the ClickHouse schema to head."""
    from analytics.clickhouse import redact
    from proxy.migrate import upgrade_all

    settings = read_settings(config_path, resolve_secrets=False)
    url = clickhouse_url(settings)
    try:
        report = upgrade_all(settings.storage.database_url, url)
    except Exception as exc:
        raise click.ClickException(f"migration failed: {type(exc).__name__}: {exc}") from None
    click.echo(f"metadata database at revision {report.sql_head}")
    applied = ", ".join(report.clickhouse_applied) or "none (up to date)"
    click.echo(f"ClickHouse {redact(url)}: applied {applied}")


def clickhouse_url(settings: Settings) -> str:
    """Where a command reaches the request log: the local ClickHouse process of a running `warden serve`
    when one serves the chDB directory (which no other process may open then), else the configured URL."""
    served = local_clickhouse(settings)
    if served is None:
        return settings.storage.clickhouse_url
    from proxy.local_clickhouse import running_endpoint

    return running_endpoint(served) or settings.storage.clickhouse_url


if __name__ == "__main__":
    prepare_process()
    migrate()
