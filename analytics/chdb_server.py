"""Serve a chDB data directory as a real ClickHouse HTTP endpoint on loopback.

For tests and local multi-process setups (several gunicorn workers cannot share one in-process
chDB). chDB serves HTTP only while a query runs, through the low-level `_chdb.query` entry point
with a `config.xml` in the working directory, so one call starts the listener, writes the port to a
file and then sleeps forever. It has no password: bind it to loopback only.

    python -m analytics.chdb_server --path var/clickhouse --port 8123 [--port-file F]
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

_CONFIG = """<clickhouse>
  <listen_host>{host}</listen_host>
  <http_port>{port}</http_port>
  <tcp_port>0</tcp_port>
</clickhouse>
"""


def serve(path: Path, host: str, port: int, port_file: Path) -> None:
    """Block forever serving `path` over HTTP; the bound port is written to `port_file`."""
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise SystemExit("chdb_server has no authentication: it listens on loopback only")
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    port_file = port_file.resolve()
    workdir = Path(tempfile.mkdtemp(prefix="warden-chdb-"))
    (workdir / "config.xml").write_text(_CONFIG.format(host=host, port=port))
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
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    _PortPublisher(tmp_port, port_file).start()
    threading.Thread(target=run_query, name="chdb-http", daemon=True).start()
    while not stopped.wait(1.0):
        pass
    raise SystemExit(f"chDB HTTP endpoint stopped: {outcome[0] if outcome else 'unknown'}")


class _PortPublisher:
    """Copies the port file atomically once chDB has written it, so readers never see half."""

    def __init__(self, source: Path, target: Path) -> None:
        self._thread = threading.Thread(target=self._run, args=(source, target), daemon=True)

    def start(self) -> None:
        self._thread.start()

    @staticmethod
    def _run(source: Path, target: Path) -> None:
        for _ in range(6000):
            text = source.read_text().strip() if source.exists() else ""
            if text.isdigit():
                tmp = target.with_suffix(".tmp")
                tmp.write_text(text)
                tmp.replace(target)
                print(f"ClickHouse HTTP endpoint at http://127.0.0.1:{text}", flush=True)
                return
            time.sleep(0.01)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--path", type=Path, required=True, help="chDB data directory")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8123, help="HTTP port (0 = any free port)")
    parser.add_argument("--port-file", type=Path, help="write the bound port here")
    args = parser.parse_args(argv)
    port_file = args.port_file or Path(tempfile.mkdtemp()) / "port"
    serve(args.path, args.host, args.port, port_file)


if __name__ == "__main__":
    main()
