"""Alembic environment: runs without the web app; the URL comes from the caller or the environment."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

from proxy.db import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or os.environ.get("WARDEN_DATABASE_URL")
if not url:
    raise SystemExit("set WARDEN_DATABASE_URL (or use `warden migrate`) to name the metadata database")


def run_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(url, poolclass=pool.NullPool)  # one-shot: leave no pooled connections
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
