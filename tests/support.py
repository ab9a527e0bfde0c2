"""What tests share: a live Warden on loopback, settings for a temporary directory, signing in, a clock
tests move by hand. Test modules import from here, never from conftest or from each other."""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml
from werkzeug.serving import make_server

from analytics.clickhouse import connect
from app import create_app
from proxy.compliance.crypto import new_kek_text
from proxy.db import Clock, utcnow
from proxy.migrate import upgrade_clickhouse, upgrade_sql
from proxy.settings import Settings, load_settings

if TYPE_CHECKING:
    from proxy.upstreams.local.engine import OnnxEngine

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery"
ADMIN_TOKEN = "admin-token-for-tests-0123456789"
# The time range the synthetic dashboard data covers.
UNTIL = datetime(2026, 11, 20, tzinfo=UTC)
SINCE = UNTIL - timedelta(days=10)
WINDOW = {"since": SINCE.isoformat(), "until": UNTIL.isoformat()}


class FakeClock:
    """A clock that stands still until a test moves it: expiries without sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def write_config(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "warden.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def make_settings(
    tmp_path: Path, upstream_url: str | None, clickhouse_url: str | None = None, **sections: Any
) -> Settings:
    kek = tmp_path / "kek.key"
    if not kek.exists():
        kek.write_text(new_kek_text())
    config: dict[str, Any] = {
        "storage": {
            "database_url": f"sqlite:///{tmp_path / 'warden.db'}",
            "clickhouse_url": clickhouse_url or f"chdb:///{tmp_path / 'clickhouse'}",
        },
        "analytics": {"flush_interval_seconds": 0.05, "spool_dir": str(tmp_path / "spool")},
        "crypto": {"kek": f"file:{kek}"},
        "exports": {"dir": str(tmp_path / "exports"), "signing_key": str(tmp_path / "signing.key")},
        "prices": {"gpt-fake": {"input": 0.15, "output": 0.6, "cached_input": 0.075}},
    }
    if upstream_url is not None:
        config["upstreams"] = [
            {
                "name": "fake",
                "type": "openai",
                "base_url": upstream_url,
                "api_key": "sk-upstream-secret",
                "models": [
                    "gpt-fake",
                    "fake-tools",
                    "fake-hang",
                    "fake-reset",
                    "fake-garbage",
                    "fake-429",
                    "fake-400",
                    "fake-500",
                    "fake-cut",
                    "text-embed-fake",
                ],
                "read_timeout": 1.5,
                "retries": 0,
            }
        ]
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(name), dict):
            config[name] = {**config[name], **value}
        else:
            config[name] = value
    return load_settings(write_config(tmp_path, config), environ={})


class _MigratedTemplate:
    """A SQLite database and a chDB directory migrated once per test process, copied for each test:
    migrating from scratch took about half a second per test, copying takes a few milliseconds.
    `tests/test_migrations.py` still migrates from scratch, on SQLite, PostgreSQL and both ClickHouses."""

    def __init__(self) -> None:
        self._made: dict[str, Path] = {}
        self._lock = threading.Lock()

    def _template(self, name: str, migrate: Callable[[str], object], scheme: str) -> Path:
        with self._lock:
            if name not in self._made:
                root = Path(tempfile.mkdtemp(prefix="warden-test-template-"))
                atexit.register(shutil.rmtree, root, ignore_errors=True)
                migrate(scheme + str(root / name))
                self._made[name] = root / name
            return self._made[name]

    def migrate(self, database_url: str, clickhouse_url: str) -> None:
        """Bring both stores to head: a copy of the template where the store is a fresh local one."""
        # As the stores read them: sqlite:///REL or sqlite:////ABS; settings make chdb:// paths absolute.
        database = _local(database_url, "sqlite:///")
        if database is not None and not database.exists():
            database.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self._template("warden.db", upgrade_sql, "sqlite:///"), database)
        else:
            upgrade_sql(database_url)
        clickhouse = _local(clickhouse_url, "chdb://")
        if clickhouse is not None and not clickhouse.exists():
            clickhouse.parent.mkdir(parents=True, exist_ok=True)
            # chDB links tables into its store with relative symlinks: copy them as links.
            template = self._template("clickhouse", upgrade_clickhouse, "chdb://")
            shutil.copytree(template, clickhouse, symlinks=True)
        else:
            upgrade_clickhouse(clickhouse_url)


MIGRATED = _MigratedTemplate()


def _local(url: str, scheme: str) -> Path | None:
    return Path(url.removeprefix(scheme)) if url.startswith(scheme) else None


class LiveWarden:
    """A Warden app served on a loopback port by a real HTTP server thread."""

    def __init__(self, settings: Settings, clock: Clock = utcnow) -> None:
        MIGRATED.migrate(settings.storage.database_url, settings.storage.clickhouse_url)
        self.settings = settings
        self.app = create_app(settings, clock=clock)
        self.services = self.app.extensions["warden"]
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        # shutdown() waits for the next poll; the default 0.5 s was paid by every test's stop.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._server.server_port}/v1"
        self._reader: Any = None

    def create_key(self, team: str = "alpha", **kwargs: Any) -> str:
        return self.services.keys.create(team, **kwargs)[1]

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]:
        """Query ClickHouse after every queued event was written."""
        assert self.services.sink.flush(20), "events were not written in time"
        if self._reader is None:
            self._reader = connect(self.settings.storage.clickhouse_url)
        return self._reader.query(sql, parameters=parameters or {}).result_rows

    def row_for(self, request_id: str) -> dict[str, Any]:
        result = self.rows_dicts("SELECT * FROM requests WHERE request_id = {id:UUID}", {"id": request_id})
        assert len(result) == 1, f"expected one row for {request_id}, got {len(result)}"
        return result[0]

    def rows_dicts(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        assert self.services.sink.flush(20)
        if self._reader is None:
            self._reader = connect(self.settings.storage.clickhouse_url)
        result = self._reader.query(sql, parameters=parameters or {})
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.services.close()
        if self._reader is not None:
            self._reader.close()


def sign_in(base: str, username: str, password: str = PASSWORD) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=10)
    response = client.post("/login", data=login_form(client, username, password))
    assert response.status_code == 303, response.text
    client.headers["x-csrf-token"] = client.get("/api/me").json()["csrf_token"]
    return client


def login_form(client: httpx.Client, username: str, password: str) -> dict[str, str]:
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    return {"username": username, "password": password, "csrf_token": token.group(1)}


def chat(engine: OnnxEngine, text: str) -> str:
    """The tiny model's chat prompt for one user message."""
    return engine.chat_prompt([{"role": "user", "content": text}])


def insert_request_row(live: LiveWarden, model: str, ts: datetime, status: int = 200) -> None:
    """One `requests` row of team alpha with a caller-chosen model name, written straight to ClickHouse."""
    live.services.clickhouse().command(
        "INSERT INTO requests (tenant, team, request_id, ts, model, status) "
        "VALUES ('default', 'alpha', generateUUIDv4(), {ts:DateTime64(3, 'UTC')}, {m:String}, {s:UInt16})",
        parameters={"ts": ts, "m": model, "s": status},
    )


def insert_findings(
    client: Any,
    team: str,
    model: str,
    ts: datetime,
    findings: list[tuple[str, str, int]],
    stage: str = "input",
) -> None:
    """One `requests` row with policy findings as (kind, action, count), written straight to ClickHouse;
    the materialized views roll it up into `findings_hourly` like a logged request."""
    client.command(
        "INSERT INTO requests (tenant, team, request_id, ts, model, status, finding_stage, finding_kind, "
        "finding_action, finding_count) VALUES ('default', {team:String}, generateUUIDv4(), "
        "{ts:DateTime64(3, 'UTC')}, {model:String}, 200, {stages:Array(String)}, {kinds:Array(String)}, "
        "{actions:Array(String)}, {counts:Array(UInt32)})",
        parameters={
            "team": team,
            "model": model,
            "ts": ts,
            "stages": [stage] * len(findings),
            "kinds": [kind for kind, _, _ in findings],
            "actions": [action for _, action, _ in findings],
            "counts": [count for _, _, count in findings],
        },
    )
