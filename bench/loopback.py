"""Helpers the benchmarks share: a free loopback port, waiting for a local server to answer, and a
Warden served by `warden serve` in front of a loopback upstream."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
WARDEN = [sys.executable, "-m", "proxy.cli"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_http(url: str, process: subprocess.Popen | None = None, seconds: float = 90) -> None:
    """Return once `url` answers anything; exit if `process` dies first or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"{process.args!r} exited before {url} answered")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s")


def start_warden(
    folder: Path,
    upstream_url: str,
    port: int,
    log: IO[Any] | int = subprocess.DEVNULL,
    session: bool = False,
    **sections: Any,
) -> tuple[subprocess.Popen, str]:
    """Migrate, create an API key and serve a Warden whose state lives in `folder` (config, SQLite,
    chDB at folder/clickhouse, spool), routing `gpt-fake` to `upstream_url`; return it and the key.
    With `session`, the server leads a process group of its own (its gunicorn workers in it)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "warden.yaml"
    settings = {
        "upstreams": [{"name": "fake", "type": "openai", "base_url": upstream_url, "models": ["gpt-fake"]}],
        "storage": {
            "database_url": f"sqlite:///{folder / 'warden.db'}",
            "clickhouse_url": f"chdb:///{folder / 'clickhouse'}",
        },
        "analytics": {"spool_dir": str(folder / "spool")},
        # One worker unless a benchmark asks for more: figures per worker compare across machines.
        "server": {"workers": 1},
    }
    for name, value in sections.items():  # a section given merges into the default one
        base = settings.get(name)
        settings[name] = {**base, **value} if isinstance(base, dict) and isinstance(value, dict) else value
    config.write_text(yaml.safe_dump(settings))
    subprocess.run(
        [*WARDEN, "migrate", "--config", str(config)], cwd=ROOT, check=True, capture_output=True, timeout=300
    )
    key = subprocess.run(
        [*WARDEN, "keys", "create", "--team", "bench", "--config", str(config)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout.strip()
    server = subprocess.Popen(
        [*WARDEN, "serve", "--no-migrate", "--config", str(config), "--port", str(port)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT if log is not subprocess.DEVNULL else subprocess.DEVNULL,
        start_new_session=session,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", server)
    except BaseException:  # Ctrl-C too: the caller has no handle on the server yet
        if session:
            os.killpg(server.pid, signal.SIGKILL)  # its gunicorn workers with it
        else:
            server.kill()
        server.wait()
        raise
    return server, key
