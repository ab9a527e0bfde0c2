"""ClickHouse clients from one URL: in-process chDB (`chdb:///path`) or a server (`http(s)://`)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver import options
from clickhouse_connect.driver.client import Client

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

# clickhouse-connect asks on every insert whether the rows are a pandas or polars DataFrame, which
# imports pandas and pyarrow (about 100 MB) into every worker. Warden inserts lists of rows only.
for _frame_library in ("pd", "pd_time_test", "pl"):
    setattr(options, _frame_library, None)


def connect(url: str, *, create_database: bool = False) -> Client:
    """Open a client for `url`.

    chDB accepts one data directory per process and must not be opened before a fork; callers
    open clients lazily in the serving process. With `create_database`, the database named in an
    HTTP URL is created first, so a fresh deployment (or test) needs no manual step.
    """
    parsed = urlparse(url)
    if parsed.scheme == "chdb":
        path = Path(url[len("chdb://") :])
        path.mkdir(parents=True, exist_ok=True)
        return clickhouse_connect.get_client(dsn=f"chdb://{path}")
    if parsed.scheme not in ("http", "https"):
        raise ValueError("ClickHouse URL must start with chdb://, http:// or https://")
    database = parsed.path.strip("/") or "default"
    if not _DB_NAME.match(database):
        raise ValueError(f"invalid ClickHouse database name {database!r}")
    if create_database and database != "default":
        bootstrap = clickhouse_connect.get_client(dsn=parsed._replace(path="/default").geturl())
        try:
            bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        finally:
            bootstrap.close()
    return clickhouse_connect.get_client(dsn=url)


def redact(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@", 1)
    return parsed._replace(netloc=netloc).geturl()
