"""Shared fixtures: a fake upstream on loopback, ClickHouse (in-process chDB and over HTTP), and a
live Warden served on a loopback port with a fresh database per test."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from werkzeug.serving import make_server

from analytics.clickhouse import connect
from app import create_app
from proxy.compliance.crypto import new_kek_text
from proxy.migrate import upgrade_all
from proxy.settings import Settings, load_settings
from proxy.upstreams.fake import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent


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
    yield f"http://127.0.0.1:{port_file.read_text().strip()}"
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


class LiveWarden:
    """A Warden app served on a loopback port by a real HTTP server thread."""

    def __init__(self, settings: Settings) -> None:
        upgrade_all(settings.storage.database_url, settings.storage.clickhouse_url)
        self.settings = settings
        self.app = create_app(settings)
        self.services = self.app.extensions["warden"]
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
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
