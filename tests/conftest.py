"""Shared fixtures: a fake upstream on loopback, ClickHouse (in-process chDB and over HTTP), and a
live Warden served on a loopback port with a fresh database per test."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from proxy.db import make_engine, make_sessions
from proxy.migrate import upgrade_sql
from proxy.upstreams.fake import FakeUpstream
from tests.support import ROOT, LiveWarden, make_settings


@pytest.fixture
def fake_upstream() -> Iterator[FakeUpstream]:
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def clickhouse_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ClickHouse HTTP endpoint served by chDB in a child process: the production path."""
    data = tmp_path_factory.mktemp("chdb-http")
    port_file = data / "port"
    log = (data / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "analytics.chdb_server",
            "--path",
            str(data / "db"),
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--password-file",
            str(data / "password"),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log.close()
            raise RuntimeError(
                f"chDB HTTP endpoint did not start: {(data / 'server.log').read_text()[-2000:]}"
            )
        time.sleep(0.05)
    password = (data / "password").read_text().strip()
    yield f"http://default:{password}@127.0.0.1:{port_file.read_text().strip()}"
    process.terminate()
    process.wait(10)
    log.close()


@pytest.fixture(params=["chdb", "http"])
def clickhouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty ClickHouse database: in-process chDB, or a new database over HTTP."""
    if request.param == "chdb":
        return f"chdb:///{tmp_path / 'clickhouse'}"
    base = request.getfixturevalue("clickhouse_http")
    return f"{base}/t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def warden(tmp_path: Path, fake_upstream: FakeUpstream, clickhouse_url: str) -> Iterator[LiveWarden]:
    live = LiveWarden(make_settings(tmp_path, fake_upstream.base_url, clickhouse_url))
    yield live
    live.stop()


@pytest.fixture
def warden_chdb(tmp_path: Path, fake_upstream: FakeUpstream) -> Iterator[LiveWarden]:
    """Warden on in-process chDB only, for tests where the backend does not matter."""
    live = LiveWarden(make_settings(tmp_path, fake_upstream.base_url))
    yield live
    live.stop()


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The openai SDK honours proxy variables; loopback traffic must go direct.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("WARDEN_CONFIG", raising=False)


PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the machine's server, dropped afterwards."""
    name = f"warden_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session", autouse=True)
def _collect_leftover_clients() -> Iterator[None]:
    """HTTP clients that tests drop in a reference cycle (SDK clients, signed-in httpx clients) are freed
    by the cyclic collector whenever it runs; pytest's final sweep then reports their sockets as errors
    of no test at all, which failed a whole green run. Collect them here first, quietly: a leak inside a
    test is still reported by that test."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
        gc.collect()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> sessionmaker[Session]:
    """A migrated metadata database, on SQLite and on PostgreSQL: the stores' tests run on both."""
    url = (
        f"sqlite:///{tmp_path / 'warden.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    upgrade_sql(url)
    engine = make_engine(url)
    request.addfinalizer(engine.dispose)
    return make_sessions(engine)
