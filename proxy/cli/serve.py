"""`warden serve`: migrate, start the local ClickHouse process a `chdb://` request log needs, then serve
with gunicorn, one worker per core unless told otherwise."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from proxy.cli.options import config_option, read_settings
from proxy.settings import Settings, cpu_cores, data_locations, local_clickhouse

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("warden")


@click.command()
@config_option
@click.option("--host", help="Address to bind (default: server.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: server.port, 8000).")
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    help="Worker processes (default: server.workers; auto: one per CPU core).",
)
@click.option("--threads", type=click.IntRange(1, 4096), help="Threads per worker (default: server.threads).")
@click.option("--migrate/--no-migrate", default=True, show_default=True, help="Apply migrations first.")
def serve(
    config_path: Path | None,
    host: str | None,
    port: int | None,
    workers: int | None,
    threads: int | None,
    migrate: bool,
) -> None:
    """Serve the proxy with gunicorn (threaded workers)."""
    settings = read_settings(config_path)
    count = _worker_count(settings, workers)
    if migrate:
        # In a child process that exits before anything else opens chDB: the gunicorn master must
        # never open it (it forks), and chDB allows one process per data directory.
        args = [sys.executable, "-m", "proxy.cli.migrate"]
        if config_path:
            args += ["--config", str(config_path)]
        if subprocess.run(args, check=False).returncode != 0:
            raise click.ClickException("migrations failed; not starting")
    from proxy.local_clickhouse import LocalClickHouse, LocalClickHouseError
    from proxy.server import WardenServer

    for line in data_locations(settings):
        log.info("%s", line)
    with contextlib.ExitStack() as stack:
        served = local_clickhouse(settings)
        if served is not None:
            clickhouse = stack.enter_context(LocalClickHouse(served))
            try:
                url = clickhouse.start()
            except LocalClickHouseError as exc:
                raise click.ClickException(str(exc)) from None
            # The workers see an http:// ClickHouse, as with a real server: none of them imports chDB.
            settings = replace(settings, storage=replace(settings.storage, clickhouse_url=url))
        WardenServer(
            settings,
            app_factory=_create_app,
            host=host or settings.server.host,
            port=settings.server.port if port is None else port,
            workers=count,
            threads=threads or settings.server.threads,
        ).run()


def _worker_count(settings: Settings, given: int | None) -> int:
    """`--workers`, else `server.workers`; `auto` (one per core) quietly settles for one worker where
    more would be wrong, while an explicit number above one is refused there."""
    configured = settings.server.workers
    explicit = given if given is not None else configured if isinstance(configured, int) else None
    wanted = explicit if explicit is not None else cpu_cores()
    if wanted == 1:
        return 1
    reason = ""
    if settings.storage.clickhouse_url.startswith("chdb://") and local_clickhouse(settings) is None:
        reason = (
            "in-process chDB allows one process per data directory: use --workers 1, set "
            "storage.embedded_clickhouse: process, or point storage.clickhouse_url at a ClickHouse "
            "HTTP endpoint"
        )
    elif not settings.storage.redis_url and _has_traffic_rules(settings):
        reason = (
            "limits and budgets kept in process hold for one worker only: use --workers 1, "
            "or set storage.redis_url so that every worker and replica shares them"
        )
    if not reason:
        if explicit is None:
            log.info("server.workers auto: %d workers, one per CPU core", wanted)
        return wanted
    if explicit is not None:
        raise click.ClickException(reason)
    log.info("server.workers auto: 1 worker, not %d (%s)", wanted, reason.partition(":")[0])
    return 1


def _has_traffic_rules(settings: Settings) -> bool:
    """Limits or budgets in the config, or set through the admin API (a database not yet migrated
    has none)."""
    if settings.limits or settings.budgets:
        return True
    from proxy.db import make_engine, make_sessions
    from proxy.traffic.rules_store import RuleStore

    engine = make_engine(settings.storage.database_url)
    try:
        return bool(RuleStore(make_sessions(engine)).list())
    except Exception:  # no such table yet: `--migrate` creates it, with no rules in it
        return False
    finally:
        engine.dispose()


def _create_app(settings: Settings) -> Flask:
    """The app, built by `create_app` in a gunicorn worker."""
    # The only import of app.py outside it (the command line sits above the factory). Inside the
    # function so that it runs in each worker after the fork: app.py loads torch, spaCy and the policy
    # models, which the gunicorn master never needs.
    from app import create_app

    return create_app(settings)
