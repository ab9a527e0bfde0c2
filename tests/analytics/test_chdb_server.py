"""`warden clickhouse-serve` (analytics/chdb_server.py, chdb_gate.py): nothing runs without the password,
nothing runs for a browser, clickhouse-connect with the password works, the password file is 0600."""

from __future__ import annotations

import base64
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from analytics.chdb_gate import PasswordError, load_password
from analytics.clickhouse import connect
from tests.support import ROOT

PASSWORD = "a-password-for-tests-0123456789"


@dataclass
class Endpoint:
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, password: str = PASSWORD, database: str = "default") -> str:
        return f"http://default:{password}@127.0.0.1:{self.port}/{database}"


def start(data: Path, env: dict[str, str], *extra: str) -> tuple[subprocess.Popen[bytes], Endpoint]:
    port_file, log = data.parent / "port", data.parent / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "analytics.chdb_server", "--path", str(data), "--port", "0"),
                *("--port-file", str(port_file), *extra),
            ],
            cwd=ROOT,
            env={**{k: v for k, v in os.environ.items() if k != "WARDEN_CLICKHOUSE_PASSWORD"}, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"chDB endpoint did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    return process, Endpoint(int(port_file.read_text()), log)


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[Endpoint]:
    """Password from the environment (a server without a gate would ignore it and answer anyone)."""
    process, served = start(tmp_path / "data", {"WARDEN_CLICKHOUSE_PASSWORD": PASSWORD})
    yield served
    process.terminate()
    process.wait(10)


def tables(served: Endpoint) -> list[str]:
    client = connect(served.url())
    try:
        return [row[0] for row in client.query("SHOW TABLES FROM default").result_rows]
    finally:
        client.close()


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_unauthenticated_and_wrong_password_requests_get_401_and_run_nothing(endpoint: Endpoint) -> None:
    attempts = [
        {},
        basic("default", "wrong-password-0123456789"),
        basic("default", ""),
        basic("someone", PASSWORD),
        {"x-clickhouse-user": "default", "x-clickhouse-key": "wrong-password-0123456789"},
        {"x-clickhouse-user": "default"},
        {"authorization": "Basic not-base64!"},
    ]
    for number, headers in enumerate(attempts):
        sql = f"CREATE TABLE t{number} (x UInt8) ENGINE = Memory"
        refused = httpx.post(endpoint.base + "/", content=sql, headers=headers)
        assert refused.status_code == 401, (headers, refused.text)
    in_url = httpx.post(
        endpoint.base + "/?user=default&password=wrong-password-0",
        content="CREATE TABLE u (x UInt8) ENGINE = Memory",
    )
    assert in_url.status_code == 401
    assert httpx.get(endpoint.base + "/?query=SELECT%201").status_code == 401
    assert tables(endpoint) == []


def test_browser_requests_are_refused_even_with_the_password(endpoint: Endpoint) -> None:
    """A page can make a browser post here, and a browser that signed in once adds the credentials."""
    for extra in (
        {"origin": "https://evil.example"},
        {"sec-fetch-site": "cross-site"},
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "multipart/form-data; boundary=x"},
    ):
        refused = httpx.post(
            endpoint.base + "/",
            content="CREATE TABLE browser (x UInt8) ENGINE = Memory",
            headers={**basic("default", PASSWORD), **extra},
        )
        assert refused.status_code == 403, extra
    assert tables(endpoint) == []


def test_clickhouse_connect_with_the_password_works(endpoint: Endpoint) -> None:
    client = connect(endpoint.url(database="warden"), create_database=True)
    try:
        client.command("CREATE TABLE t (n UInt32, s String) ENGINE = MergeTree ORDER BY n")
        client.insert("t", [[i, "x" * (i % 50)] for i in range(20_000)], column_names=["n", "s"])
        assert client.query("SELECT count(), sum(n) FROM t").result_rows == [(20_000, 199_990_000)]
        assert client.query("SELECT {n:UInt8} + 1", parameters={"n": 41}).result_rows == [(42,)]
    finally:
        client.close()
    # The ClickHouse headers work too.
    answer = httpx.post(
        endpoint.base + "/",
        content="SELECT currentUser()",
        headers={"x-clickhouse-user": "default", "x-clickhouse-key": PASSWORD},
    )
    assert answer.status_code == 200 and answer.text.strip() == "default"


def test_chdb_itself_answers_only_the_gate(endpoint: Endpoint) -> None:
    """chDB's own loopback port is reachable by any local user: without the relay token it refuses."""
    found = re.search(r"private port (\d+)", endpoint.log.read_text())
    assert found is not None
    private = f"http://127.0.0.1:{found.group(1)}"
    for headers in ({}, basic("default", ""), basic("default", PASSWORD), {"x-warden-relay": "0" * 64}):
        refused = httpx.post(
            private + "/", content="CREATE TABLE sneak (x UInt8) ENGINE = Memory", headers=headers
        )
        assert refused.status_code == 403
    assert tables(endpoint) == []


def test_the_password_file_is_made_0600_and_kept(tmp_path: Path) -> None:
    process, served = start(tmp_path / "clickhouse", {})
    try:
        made = tmp_path / "clickhouse.password"  # beside the data directory
        assert stat.S_IMODE(made.stat().st_mode) == 0o600
        password = made.read_text().strip()
        assert len(password) >= 32
        assert httpx.post(served.base + "/", content="SELECT 1").status_code == 401
        client = connect(served.url(password))
        assert client.query("SELECT 1").result_rows == [(1,)]
        client.close()
    finally:
        process.terminate()
        process.wait(10)
    assert load_password(made, environ={}) == password, "a restart keeps the password"


def test_a_password_file_others_may_read_is_refused(tmp_path: Path) -> None:
    exposed = tmp_path / "pw"
    exposed.write_text("a-long-enough-password-here\n")
    exposed.chmod(0o644)
    with pytest.raises(PasswordError, match="chmod 600"):
        load_password(exposed, environ={})
    with pytest.raises(PasswordError, match="at least 16"):
        load_password(exposed, environ={"WARDEN_CLICKHOUSE_PASSWORD": "short"})


def test_it_exits_with_its_parent_when_asked(tmp_path: Path) -> None:
    """A SIGKILLed `warden serve` cannot stop its local ClickHouse: the child notices by itself."""
    port_file = tmp_path / "port"
    command = [sys.executable, "-m", "analytics.chdb_server", "--path", str(tmp_path / "db"), "--port", "0"]
    command += ["--port-file", str(port_file), "--password-file", str(tmp_path / "pw"), "--exit-with-parent"]
    parent = subprocess.Popen(
        ["sh", "-c", '"$@" >/dev/null 2>&1 & echo $!; exec sleep 60', "sh", *command],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert parent.stdout is not None
    with parent.stdout:
        child = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert time.monotonic() < deadline, "the endpoint did not start"
            time.sleep(0.05)
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _running(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(child), "the endpoint outlived its parent"
    finally:
        parent.kill()
        parent.wait(10)
        if _running(child):
            os.kill(child, signal.SIGKILL)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's reaper may be slow, or absent in a container)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
