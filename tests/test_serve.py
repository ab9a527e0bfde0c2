"""`warden serve` for real: gunicorn with Warden's threaded worker, embedded chDB served to the workers by a
local ClickHouse process, SIGTERM flushes."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import openai
import pytest
from click.testing import CliRunner

from analytics.clickhouse import connect
from proxy.cli.main import main
from proxy.cli.serve import _worker_count
from proxy.settings import Settings, load_settings
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
            "server": {"threads": 8, "workers": 1},  # several: the embedded test below
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


def _settings(tmp_path: Path, **sections: object) -> Settings:
    config = write_config(tmp_path, {"storage": {"database_url": "sqlite://"}, **sections})
    return load_settings(config, environ={})


def test_auto_workers_are_one_per_core_unless_more_would_be_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("proxy.cli.serve.cpu_cores", lambda: 4)
    assert _worker_count(_settings(tmp_path), None) == 4  # embedded chDB, served by a local process
    assert _worker_count(_settings(tmp_path, server={"workers": 3}), None) == 3
    assert _worker_count(_settings(tmp_path, server={"workers": 3}), 2) == 2
    limited = _settings(tmp_path, limits=[{"scope": "key", "model": "*", "rpm": 6}])
    inprocess = _settings(tmp_path, storage={"database_url": "sqlite://", "embedded_clickhouse": "inprocess"})
    with caplog.at_level(logging.INFO, "warden"):
        assert _worker_count(limited, None) == 1 and _worker_count(inprocess, None) == 1
    assert "server.workers auto: 1 worker, not 4 (limits and budgets kept in process" in caplog.text
    assert "server.workers auto: 1 worker, not 4 (in-process chDB" in caplog.text


@pytest.mark.parametrize(
    ("sections", "refusal"),
    [
        ({"storage": {"embedded_clickhouse": "inprocess"}}, "one process per data directory"),
        ({"limits": [{"scope": "key", "model": "*", "rpm": 6}]}, "limits and budgets kept in process"),
    ],
)
def test_serve_refuses_several_workers_asked_for_where_they_would_be_wrong(
    tmp_path: Path, sections: dict[str, dict[str, object]], refusal: str
) -> None:
    storage = {"clickhouse_url": f"chdb:///{tmp_path / 'ch'}", **sections.pop("storage", {})}
    config = write_config(tmp_path, {"storage": storage, **sections})
    result = CliRunner().invoke(main, ["serve", "--config", str(config), "--workers", "2"])
    assert result.exit_code == 1 and refusal in result.output


def test_sigkill_loses_no_answered_request(
    tmp_path: Path, fake_upstream: FakeUpstream, clickhouse_http: str
) -> None:
    """Every answered request has its row even when every Warden process is killed right after."""
    import uuid

    url = f"{clickhouse_http}/t_{uuid.uuid4().hex[:10]}"
    config = write_config(
        tmp_path,
        {
            "upstreams": [
                {"name": "fake", "type": "openai", "base_url": fake_upstream.base_url, "models": ["gpt-fake"]}
            ],
            "server": {"workers": 1},
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


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name in parentheses may hold spaces: the parent pid follows its closing one.
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _cmdline(pid: int) -> str:
    return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()


def _maps_chdb(pid: int) -> bool:
    """Whether the process has chDB's native library loaded, which `import chdb` does."""
    return "_chdb" in (Path("/proc") / str(pid) / "maps").read_text()


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _owner(pid_candidates: list[int], server_port: int, client_port: int) -> int | None:
    """The process holding the server side of the loopback connection from `client_port`."""
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    inode = next(
        (
            line.split()[9]
            for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
            if line.split()[1] == local and line.split()[2] == remote
        ),
        None,
    )
    for pid in pid_candidates:
        for fd in (Path("/proc") / str(pid) / "fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
    return None


def test_serve_shares_embedded_chdb_through_a_supervised_local_clickhouse(
    tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    """The embedded default with two workers: the master runs chDB as a child process that both workers
    write to over loopback (neither imports chDB); a killed child comes back and the events sent
    meanwhile land; stopping Warden stops the child."""
    from proxy.db import make_engine, make_sessions
    from proxy.identity.keys import KeyStore
    from proxy.local_clickhouse import CHILD_NICENESS, port_file, running_endpoint
    from proxy.migrate import upgrade_sql

    clickhouse_dir = tmp_path / "clickhouse"
    database_url = f"sqlite:///{tmp_path / 'warden.db'}"
    config = write_config(
        tmp_path,
        {
            "upstreams": [
                {"name": "fake", "type": "openai", "base_url": fake_upstream.base_url, "models": ["gpt-fake"]}
            ],
            "storage": {"database_url": database_url, "clickhouse_url": f"chdb:///{clickhouse_dir}"},
            "analytics": {"spool_dir": str(tmp_path / "spool"), "flush_interval_seconds": 0.05},
            "crypto": {"kek": f"auto:{tmp_path / 'kek.key'}"},
        },
    )
    # The key in this process, not through the CLI (seconds of imports); `serve` migrates ClickHouse.
    upgrade_sql(database_url)
    engine = make_engine(database_url)
    key = KeyStore(make_sessions(engine), cache_seconds=0).create("two")[1]
    engine.dispose()

    port = free_port()
    log_path = tmp_path / "serve.log"
    command = [sys.executable, "-m", "proxy.cli", "serve", "--config", str(config), "--port", str(port)]
    with log_path.open("w") as log:
        master = subprocess.Popen(
            [*command, "--workers", "2"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    child = 0
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert master.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        processes = _children(master.pid)
        [child] = [pid for pid in processes if "analytics.chdb_server" in _cmdline(pid)]
        workers = [pid for pid in processes if pid != child]
        assert len(workers) == 2 and _maps_chdb(child)
        assert not any(_maps_chdb(pid) for pid in [master.pid, *workers]), "only the child loads chDB"
        # Its inserts and merges yield the CPU to the workers' requests. Its threads inherit the
        # priority, but ClickHouse may raise one of its own (its memory accounting thread does).
        niceness = []
        for tid in os.listdir(f"/proc/{child}/task"):
            with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
                niceness.append(os.getpriority(os.PRIO_PROCESS, int(tid)))
        assert os.getpriority(os.PRIO_PROCESS, child) == CHILD_NICENESS
        assert niceness.count(CHILD_NICENESS) > len(niceness) // 2, niceness
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in workers] == [own, own]
        reader_url = running_endpoint(clickhouse_dir)
        assert reader_url is not None and reader_url.startswith("http://default:")
        reader = connect(reader_url)
        # A command that would open chDB goes through the running endpoint instead (in this process:
        # it would hang on the directory's lock, or import chDB, otherwise).
        migrated = CliRunner().invoke(main, ["migrate", "--config", str(config)])
        assert migrated.exit_code == 0 and "ClickHouse http://default:***@127.0.0.1" in migrated.output

        def send(n: int) -> tuple[str, int]:
            """One request on a new connection: its request id and the worker that answered it."""
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                body = {"model": "gpt-fake", "messages": [{"role": "user", "content": f"m{n}"}]}
                headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
                connection.request("POST", "/v1/chat/completions", json.dumps(body), headers)
                response = connection.getresponse()
                assert response.status == 200, response.read()
                response.read()
                assert connection.sock is not None  # kept alive: the worker still holds its end
                worker = _owner(workers, port, connection.sock.getsockname()[1])
                return response.getheader("x-warden-request-id") or "", worker or 0
            finally:
                connection.close()

        def landed(ids: set[str]) -> None:
            found: set[str] = set()
            deadline = time.monotonic() + 30
            while not ids <= found and time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    found = {str(r[0]) for r in reader.query("SELECT request_id FROM requests").result_rows}
                time.sleep(0.1)
            assert ids <= found, f"{len(ids - found)} of {len(ids)} events missing"

        # New connections until both workers have answered some (the kernel picks the acceptor).
        sent: dict[str, int] = {}
        for n in range(60):
            request_id, worker = send(n)
            sent[request_id] = worker
            if set(sent.values()) == set(workers) and n >= 3:
                break
        assert set(sent.values()) == set(workers), "one worker took every connection"
        landed(set(sent))

        os.kill(child, signal.SIGKILL)
        meanwhile = {send(100 + n)[0] for n in range(6)}
        landed(meanwhile)
        [restarted] = [pid for pid in _children(master.pid) if "analytics.chdb_server" in _cmdline(pid)]
        assert restarted != child and running_endpoint(clickhouse_dir) == reader_url, "same port, same URL"
        child = restarted
        reader.close()

        master.send_signal(signal.SIGTERM)
        assert master.wait(60) == 0
    finally:
        if master.poll() is None:
            os.killpg(master.pid, signal.SIGKILL)
            master.wait(10)
    assert not _alive(child), "the local ClickHouse stops with Warden"
    assert not port_file(clickhouse_dir).exists()
    text = log_path.read_text()
    assert "starting it again" in text and key not in text


def test_a_ready_worker_has_moved_its_startup_heap_out_of_the_collectors_reach() -> None:
    """What a worker built at start is frozen, so a full garbage collection while it serves walks only
    what came after (it took 20-100 ms over the whole heap)."""
    import gc

    from proxy.server import _worker_ready

    built_at_start = [object() for _ in range(10)]
    assert gc.get_freeze_count() == 0
    assert any(o is built_at_start for o in gc.get_objects())
    try:
        _worker_ready(SimpleNamespace(wsgi=None))  # a worker with no app: there is no sink to start
        assert gc.get_freeze_count() > 0
        assert not any(o is built_at_start for o in gc.get_objects()), "frozen, out of every generation"
    finally:
        gc.unfreeze()
