"""Serve a chDB data directory as a real ClickHouse HTTP endpoint on loopback, behind a password.

For tests and local multi-process setups (several gunicorn workers cannot share one in-process
chDB). chDB serves HTTP only while a query runs, through the low-level `_chdb.query` entry point
with a `config.xml` in the working directory, so one call starts the listener, writes the port to a
file and then sleeps forever. chDB listens on a private port that answers only the gate
(`analytics/chdb_gate.py`), which serves the public port: user `default`, the password from
`WARDEN_CLICKHOUSE_PASSWORD` or the password file (made, mode 0600, on first start).

    python -m analytics.chdb_server --path var/clickhouse --port 8123 [--port-file F] [--password-file F]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

from analytics.chdb_gate import PASSWORD_ENV, RELAY_HEADER, USER, Gate, PasswordError, load_password

# The private listener: only requests with this start's relay token reach the query handler.
_CONFIG = """<clickhouse>
  <listen_host>127.0.0.1</listen_host>
  <http_port>0</http_port>
  <tcp_port>0</tcp_port>
  <http_handlers>
    <rule>
      <headers><{header}>regex:^{token}$</{header}></headers>
      <handler><type>dynamic_query_handler</type><query_param_name>query</query_param_name></handler>
    </rule>
    <rule>
      <handler><type>static</type><status>403</status><response_content>refused</response_content></handler>
    </rule>
  </http_handlers>
</clickhouse>
"""


def default_password_file(path: Path) -> Path:
    """Beside the data directory: `var/clickhouse` keeps its password in `var/clickhouse.password`."""
    return path.resolve().with_name(path.resolve().name + ".password")


def serve(
    path: Path,
    host: str,
    port: int,
    port_file: Path,
    password_file: Path | None = None,
    *,
    exit_with_parent: bool = False,
) -> None:
    """Block forever serving `path` over HTTP; the bound port is written to `port_file`. With
    `exit_with_parent`, exit once the process that started this one is gone."""
    parent = os.getppid()
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise SystemExit("chdb_server speaks plain HTTP: it listens on loopback only")
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    port_file = port_file.resolve()
    password_file = (password_file or default_password_file(path)).resolve()
    try:
        password = load_password(password_file)
    except (PasswordError, OSError) as exc:
        raise SystemExit(f"no password for the ClickHouse endpoint: {exc}") from None
    token = secrets.token_hex(32)
    workdir = Path(tempfile.mkdtemp(prefix="warden-chdb-"))  # 0700: the token is in config.xml
    (workdir / "config.xml").write_text(_CONFIG.format(header=RELAY_HEADER, token=token))
    os.chdir(workdir)  # chDB reads config.xml from the working directory at first use
    from chdb import _chdb

    tmp_port = workdir / "port.txt"
    sql = (
        "SYSTEM START LISTEN HTTP; "
        f"SELECT getServerPort('http_port') INTO OUTFILE '{tmp_port}' FORMAT TabSeparated; "
        # Infinite: the HTTP listener lives only as long as this query.
        "SELECT sleep(3) FROM system.numbers SETTINGS max_block_size=1 FORMAT Null"
    )
    stopped = threading.Event()
    outcome: list[str] = []

    def run_query() -> None:
        # The compiled module's stub does not declare its low-level entry point.
        query = _chdb.query  # type: ignore[attr-defined]
        result = query(sql, "TabSeparated", path=str(path))
        outcome.append(getattr(result, "error_message", lambda: "")() or "no error reported")
        stopped.set()

    # The query blocks inside C, where Python signal handlers never run: it gets a thread, and
    # the main thread stays free to exit on SIGTERM/SIGINT (inserted parts are already on disk).
    def leave(*_: object) -> None:
        shutil.rmtree(workdir, ignore_errors=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)
    threading.Thread(target=run_query, name="chdb-http", daemon=True).start()
    private = _wait_for_port(tmp_port, stopped)
    if private is None:
        raise SystemExit(f"chDB HTTP endpoint did not start: {outcome[0] if outcome else 'unknown'}")
    server = make_server(host, port, Gate(password, private, token), threaded=True, request_handler=_Quiet)
    threading.Thread(target=server.serve_forever, name="chdb-gate", daemon=True).start()
    _publish(server.server_port, port_file)
    where = f"${PASSWORD_ENV}" if PASSWORD_ENV in os.environ else str(password_file)
    print(
        f"ClickHouse HTTP endpoint at http://{host}:{server.server_port} (user {USER}, password in {where}); "
        f"chDB on private port {private}",
        flush=True,
    )
    while not stopped.wait(1.0):
        if exit_with_parent and os.getppid() != parent:
            leave()  # a SIGKILLed `warden serve`: nobody would ever stop this process
    raise SystemExit(f"chDB HTTP endpoint stopped: {outcome[0] if outcome else 'unknown'}")


class _Quiet(WSGIRequestHandler):
    """No line per request on stderr: the sink inserts several times a second."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def _wait_for_port(source: Path, stopped: threading.Event) -> int | None:
    for _ in range(6000):
        text = source.read_text().strip() if source.exists() else ""
        if text.isdigit():
            return int(text)
        if stopped.is_set():
            return None
        time.sleep(0.01)
    return None


def _publish(port: int, target: Path) -> None:
    """Write the port atomically, so readers never see half of it."""
    tmp = target.with_suffix(".tmp")
    tmp.write_text(str(port))
    tmp.replace(target)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--path", type=Path, required=True, help="chDB data directory")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8123, help="HTTP port (0 = any free port)")
    parser.add_argument("--port-file", type=Path, help="write the bound port here")
    parser.add_argument(
        "--password-file",
        type=Path,
        help="the password of user default (made, mode 0600, if absent; default: DATA_DIR.password "
        "beside the data directory; $WARDEN_CLICKHOUSE_PASSWORD wins)",
    )
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="exit once the parent process is gone"
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        choices=range(20),
        metavar="0-19",
        help="lower this process's CPU priority by this much before chDB starts its threads",
    )
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)  # set before chDB starts: its threads inherit it
    port_file = args.port_file or Path(tempfile.mkdtemp()) / "port"
    serve(
        args.path, args.host, args.port, port_file, args.password_file, exit_with_parent=args.exit_with_parent
    )


if __name__ == "__main__":
    main()
