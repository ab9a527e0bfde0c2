"""`warden serve` for real: gunicorn with Warden's threaded worker, in-process chDB, SIGTERM flushes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai

from proxy.upstreams.fake import FakeUpstream
from tests.support import ROOT, write_config


def warden_cli(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", *args, "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def count_rows(clickhouse_dir: Path) -> list:
    # A separate process: one process may hold only one chDB data directory.
    script = (
        "import json, clickhouse_connect\n"
        f"c = clickhouse_connect.get_client(dsn='chdb://{clickhouse_dir}')\n"
        "rows = c.query('SELECT team, status, streamed, count() FROM requests "
        "GROUP BY team, status, streamed ORDER BY streamed').result_rows\n"
        "print(json.dumps(rows))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout)


def test_serve_migrate_keys_and_graceful_stop(tmp_path: Path, fake_upstream: FakeUpstream) -> None:
    clickhouse_dir = tmp_path / "clickhouse"
    config = write_config(
        tmp_path,
        {
            "server": {"threads": 8},
            "upstreams": [
                {"name": "fake", "type": "openai", "base_url": fake_upstream.base_url, "models": ["gpt-fake"]}
            ],
            "storage": {
                "database_url": f"sqlite:///{tmp_path / 'warden.db'}",
                "clickhouse_url": f"chdb:///{clickhouse_dir}",
            },
            "analytics": {"spool_dir": str(tmp_path / "spool")},
            "crypto": {"kek": f"auto:{tmp_path / 'kek.key'}"},
        },
    )
    assert warden_cli("migrate", config=config).returncode == 0
    created = warden_cli("keys", "create", "--team", "beta", config=config)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    listed = warden_cli("keys", "list", config=config)
    assert "beta" in listed.stdout and key not in listed.stdout

    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve", "--config", str(config), "--port", str(port)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        api = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        for i in range(10):
            reply = api.chat.completions.create(
                model="gpt-fake", messages=[{"role": "user", "content": f"m{i}"}]
            )
            assert reply.choices[0].message.content == f"m{i}"
        for i in range(5):
            stream = api.chat.completions.create(
                model="gpt-fake", messages=[{"role": "user", "content": f"s{i}"}], stream=True
            )
            assert "".join(c.choices[0].delta.content or "" for c in stream) == f"s{i}"
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0
    finally:
        if server.poll() is None:
            server.kill()
        log.close()
    text = (tmp_path / "serve.log").read_text()
    assert "Using worker: WardenWorker" in text
    assert key not in text, "the API key must never reach the logs"
    assert count_rows(clickhouse_dir) == [["beta", 200, False, 10], ["beta", 200, True, 5]]
    assert (tmp_path / "kek.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "warden.db").stat().st_mode & 0o777 == 0o600, "the metadata DB is private"
    assert [p for p in (tmp_path / "spool").rglob("*.seg") if p.stat().st_size] == [], "spool drained at exit"


def test_serve_refuses_several_workers_on_chdb(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"storage": {"clickhouse_url": f"chdb:///{tmp_path / 'ch'}"}})
    result = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "serve", "--config", str(config), "--workers", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and "one process per data directory" in result.stderr


def test_sigkill_loses_no_answered_request(
    tmp_path: Path, fake_upstream: FakeUpstream, clickhouse_http: str
) -> None:
    """Every answered request has its row even when every Warden process is killed right after."""
    import os
    import uuid

    from analytics.clickhouse import connect

    url = f"{clickhouse_http}/t_{uuid.uuid4().hex[:10]}"
    config = write_config(
        tmp_path,
        {
            "upstreams": [
                {"name": "fake", "type": "openai", "base_url": fake_upstream.base_url, "models": ["gpt-fake"]}
            ],
            "storage": {"database_url": f"sqlite:///{tmp_path / 'warden.db'}", "clickhouse_url": url},
            # A long flush interval: the events are still queued in memory when the kill comes.
            "analytics": {"spool_dir": str(tmp_path / "spool"), "flush_interval_seconds": 30},
            "crypto": {"kek": f"auto:{tmp_path / 'kek.key'}"},
        },
    )
    assert warden_cli("migrate", config=config).returncode == 0
    key = warden_cli("keys", "create", "--team", "k", config=config).stdout.strip()

    log = (tmp_path / "serve.log").open("a")

    def serve(port: int) -> subprocess.Popen:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "proxy.cli",
                "serve",
                "--no-migrate",
                "--config",
                str(config),
                "--port",
                str(port),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return process
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)

    port = free_port()
    first = serve(port)
    api = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
    answered = [
        api.chat.completions.with_raw_response.create(
            model="gpt-fake", messages=[{"role": "user", "content": f"k{i}"}]
        ).headers["x-warden-request-id"]
        for i in range(20)
    ]
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(30)
    reader = connect(url)
    assert reader.query("SELECT count() FROM requests").result_rows[0][0] == 0, "still only in the spool"
    second = serve(port)  # adopts the dead process's spool and replays it
    try:
        deadline = time.monotonic() + 60
        found: set[str] = set()
        while time.monotonic() < deadline and len(found) < 20:
            found = {str(r[0]) for r in reader.query("SELECT request_id FROM requests FINAL").result_rows}
            time.sleep(0.3)
        assert found == set(answered)
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(60)
        reader.close()
        log.close()
