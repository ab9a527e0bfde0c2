"""The local ClickHouse process `warden serve` runs for a `chdb://` request log, so that every gunicorn
worker shares one chDB data directory over loopback HTTP.

chDB lets one process open a data directory, and importing it costs a process about 250 MB. So one
child (`python -m analytics.chdb_server`, behind a password) serves the directory, the workers reach it
as an `http://` ClickHouse (the code path of a real server), and neither the gunicorn master nor a
worker imports chDB.

- The child writes its port to `DIR.port` once it answers; the master waits for that before gunicorn
  forks the workers, whose URL names the port.
- A child that dies is started again on the same port after a backoff (0.5 s doubling to 30 s, reset
  once a child has lived a minute). Meanwhile the workers' event writers keep events in their spools
  and replay them once it answers (`analytics/sink.py`).
- The child runs at a lower CPU priority (`CHILD_NICENESS`): on a machine whose cores the workers
  keep busy, its inserts and merges wait for the requests rather than delay them. Its lag is a matter
  of seconds and loses nothing (the spools hold the events).
- The child leaves with Warden: `stop()` when `warden serve` exits, and the child exits by itself once
  its parent is gone (`--exit-with-parent`), so even a SIGKILLed master leaves none behind. It runs in a
  session of its own: a Ctrl-C in the terminal reaches the workers, which flush their last events to
  it before the master stops it.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from analytics.chdb_gate import PASSWORD_ENV, USER, PasswordError, load_password
from analytics.chdb_server import default_password_file
from proxy.settings import clickhouse_url_with_password

log = logging.getLogger("warden")

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 30.0
_HEALTHY_AFTER_S = 60.0

# How much lower the child's CPU priority is than the workers' (nice(2)); 0-19.
CHILD_NICENESS = 10


class LocalClickHouseError(RuntimeError):
    """The local ClickHouse process could not be started; the message says why."""


def port_file(data_dir: Path) -> Path:
    """Beside the data directory, like its password: `var/clickhouse` publishes `var/clickhouse.port`."""
    return data_dir.with_name(data_dir.name + ".port")


def running_endpoint(data_dir: Path) -> str | None:
    """The URL (password included) of a local ClickHouse process that serves `data_dir` and answers
    now, or None. Commands that would open chDB in process use it while `warden serve` runs."""
    port = _published_port(port_file(data_dir))
    password_file = default_password_file(data_dir)
    if port is None or (PASSWORD_ENV not in os.environ and not password_file.exists()):
        return None
    try:
        password = load_password(password_file)
    except (PasswordError, OSError):
        return None
    return _url(port, password) if _answers(port, password, timeout=2.0) else None


class LocalClickHouse:
    """One supervised `analytics.chdb_server` child serving a chDB data directory on 127.0.0.1."""

    def __init__(self, data_dir: Path, *, start_timeout: float = START_TIMEOUT_S) -> None:
        self.data_dir = data_dir
        self.port_file = port_file(data_dir)
        self.password_file = default_password_file(data_dir)
        self.port = 0
        self._start_timeout = start_timeout
        self._password = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._owner = os.getpid()
        self._supervisor: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> str:
        """Start the child and wait until it answers; returns the URL (password included) for workers."""
        if running_endpoint(self.data_dir) is not None:
            raise LocalClickHouseError(
                f"another process already serves {self.data_dir} (port in {self.port_file}): "
                "stop that `warden serve` first"
            )
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # Made here on a first start (mode 0600), before the child reads it.
            self._password = load_password(self.password_file)
        except (PasswordError, OSError) as exc:
            raise LocalClickHouseError(f"no password for the local ClickHouse: {exc}") from None
        with self._lock:
            self._spawn(0)
        try:
            self.port = self._wait_ready()
        except LocalClickHouseError:
            self.stop()
            raise
        self._supervisor = threading.Thread(target=self._supervise, name="warden-clickhouse", daemon=True)
        self._supervisor.start()
        log.info(
            "local ClickHouse (pid %s) serves %s at http://127.0.0.1:%d (user %s, password in %s)",
            self.pid,
            self.data_dir,
            self.port,
            USER,
            f"${PASSWORD_ENV}" if PASSWORD_ENV in os.environ else self.password_file,
        )
        return _url(self.port, self._password)

    def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL) and the supervisor; idempotent."""
        if os.getpid() != self._owner:
            # A gunicorn worker unwinds through the master's stack on exit: the child is not its own.
            return
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT_S)
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(STOP_TIMEOUT_S)
        self.port_file.unlink(missing_ok=True)

    def __enter__(self) -> LocalClickHouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, port: int) -> None:
        # A stale file (a child killed outright) would pass for the new child's readiness.
        self.port_file.unlink(missing_ok=True)
        command = [
            sys.executable,
            "-m",
            "analytics.chdb_server",
            "--path",
            str(self.data_dir),
            "--port",
            str(port),
            "--port-file",
            str(self.port_file),
            "--password-file",
            str(self.password_file),
            "--exit-with-parent",
            "--nice",
            str(CHILD_NICENESS),
        ]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        self._started_at = time.monotonic()

    def _wait_ready(self) -> int:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline and not self._stopping.is_set():
            if process.poll() is not None:
                raise LocalClickHouseError(
                    f"the local ClickHouse for {self.data_dir} exited with status {process.returncode} "
                    "while starting (its output is above)"
                )
            port = _published_port(self.port_file)
            if port is not None and _answers(port, self._password, timeout=1.0):
                return port
            time.sleep(0.05)
        process.kill()
        raise LocalClickHouseError(
            f"the local ClickHouse for {self.data_dir} did not answer within {self._start_timeout:.0f} s"
        )

    def _supervise(self) -> None:
        delay = _BACKOFF_FIRST_S
        while True:
            process = self._process
            assert process is not None
            # gunicorn's master reaps every child (waitpid(-1)): wait() then sees ECHILD and returns
            # without the status, which is why the log line below does not give one.
            process.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - self._started_at > _HEALTHY_AFTER_S:
                delay = _BACKOFF_FIRST_S
            log.warning(
                "local ClickHouse (pid %d) is gone; starting it again in %.1f s, events wait in the "
                "spool meanwhile",
                process.pid,
                delay,
            )
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, _BACKOFF_MAX_S)
            with self._lock:
                if self._stopping.is_set():
                    return
                self._spawn(self.port)
            try:
                self._wait_ready()
            except LocalClickHouseError as exc:
                if not self._stopping.is_set():  # else Warden is stopping, and stopped it
                    log.error("%s", exc)
                continue
            log.info("local ClickHouse (pid %s) answers again at http://127.0.0.1:%d", self.pid, self.port)


# Loopback: never through a proxy that HTTP_PROXY names.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _published_port(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:  # not written yet, or removed by a stop
        return None
    return int(text) if text.isdigit() else None


def _url(port: int, password: str) -> str:
    return clickhouse_url_with_password(f"http://127.0.0.1:{port}", password)


def _answers(port: int, password: str, *, timeout: float) -> bool:
    credentials = base64.b64encode(f"{USER}:{password}".encode()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/?query=SELECT%201",
        headers={"Authorization": f"Basic {credentials}"},
    )
    try:
        with _DIRECT.open(request, timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False
