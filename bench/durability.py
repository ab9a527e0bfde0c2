"""Durability and ingestion: nothing lost through a ClickHouse outage or a SIGKILL of Warden.

1. Ingestion: events/s one process sustains into ClickHouse through the sink (spool included).
2. Outage: steady load through `warden serve` (2 workers, ClickHouse over HTTP served by chDB); the
   ClickHouse endpoint is stopped for --outage seconds and restarted on the same data. Every answered
   request must have exactly one row.
3. SIGKILL: the same load; Warden is killed with SIGKILL mid-load and restarted. Every answered request
   must have its row; requests in flight at the kill got no answer (the client saw an error).

    python bench/durability.py [--rate 50] [--seconds 60] [--outage 30] [--events 100000]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loopback import free_port, wait_http  # noqa: E402

from analytics import schema  # noqa: E402
from analytics.clickhouse import connect  # noqa: E402
from analytics.events import ExchangeEvent  # noqa: E402
from analytics.sink import ClickHouseSink  # noqa: E402


class Process:
    def __init__(self, args: list[str], log: Path) -> None:
        self.args, self.log = args, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        handle = self.log.open("a")
        # Its own process group, so a SIGKILL reaches every worker, as when a machine kills the service.
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.send_signal(sig)
            self.proc.wait(60)


def event() -> ExchangeEvent:
    return ExchangeEvent(
        "default",
        "bench",
        "",
        "key",
        uuid.uuid4(),
        datetime.now(UTC),
        "chat.completions",
        "m",
        "u",
        200,
        "",
        False,
        False,
        10.0,
        None,
        9.0,
        1.0,
        10,
        20,
        0,
        12,
        "stop",
        1,
        "",
        30,
    )


def ingestion(work: Path, url: str, label: str, events: int) -> tuple[str, float, float]:
    client = connect(url, create_database=True)
    schema.upgrade(client)
    client.close()
    sink = ClickHouseSink(lambda: connect(url), work / f"spool-{label}", batch_size=5000, flush_interval=0.2)
    items = [event() for _ in range(events)]
    started = time.perf_counter()
    for item in items:
        sink.emit(item)
    emitted = time.perf_counter() - started
    assert sink.flush(600)
    total = time.perf_counter() - started
    sink.close()
    return label, events / emitted, events / total


class Load:
    """Paced requests from a few threads; remembers what was answered."""

    def __init__(self, base: str, key: str, rate: float) -> None:
        self.base, self.key, self.rate = base, key, rate
        self.answered: list[str] = []
        self.failed = 0
        self.lock = threading.Lock()

    def run(self, seconds: float) -> None:
        stop = time.monotonic() + seconds
        interval = 1.0 / self.rate
        slots = iter(range(10**9))
        slot_lock = threading.Lock()
        start = time.monotonic()

        def worker() -> None:
            client = httpx.Client(timeout=10, headers={"authorization": f"Bearer {self.key}"})
            while True:
                with slot_lock:
                    at = start + next(slots) * interval
                if at >= stop:
                    return
                time.sleep(max(0.0, at - time.monotonic()))
                try:
                    response = client.post(
                        self.base + "/v1/chat/completions",
                        json={
                            "model": "gpt-fake",
                            "messages": [{"role": "user", "content": "durability probe"}],
                        },
                    )
                    with self.lock:
                        if response.status_code == 200:
                            self.answered.append(response.headers["x-warden-request-id"])
                        else:
                            self.failed += 1
                except httpx.HTTPError:
                    with self.lock:
                        self.failed += 1
                        client = httpx.Client(timeout=10, headers={"authorization": f"Bearer {self.key}"})

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def rows_for(url: str, ids: list[str]) -> tuple[int, int, int]:
    """(answered requests with a row, distinct rows, rows under FINAL) for the bench team."""
    client = connect(url)
    found = {str(r[0]) for r in client.query("SELECT DISTINCT request_id FROM requests").result_rows}
    final = client.query("SELECT count() FROM requests FINAL").result_rows[0][0]
    client.close()
    return sum(1 for i in ids if i in found), len(found), final


def scenario(work: Path, name: str, rate: float, seconds: float, outage: float, kill: bool) -> dict:
    logs = work / name
    logs.mkdir()
    ch_port, up_port, port = free_port(), free_port(), free_port()
    ch = Process(
        [sys.executable, "-m", "analytics.chdb_server", "--path", str(logs / "ch"), "--port", str(ch_port)],
        logs / "clickhouse.log",
    )
    ch.start()
    wait_http(f"http://127.0.0.1:{ch_port}/ping")
    password = (logs / "ch.password").read_text().strip()  # made by clickhouse-serve beside its data
    url = f"http://default:{password}@127.0.0.1:{ch_port}/warden"
    fake = Process(
        [sys.executable, "-m", "proxy.cli", "fake-upstream", "--port", str(up_port)], logs / "fake.log"
    )
    fake.start()
    config = logs / "warden.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {"workers": 2, "threads": 16},
                "upstreams": [
                    {
                        "name": "fake",
                        "type": "openai",
                        "base_url": f"http://127.0.0.1:{up_port}/v1",
                        "models": ["gpt-fake"],
                    }
                ],
                "storage": {"database_url": f"sqlite:///{logs / 'warden.db'}", "clickhouse_url": url},
                "analytics": {"spool_dir": str(logs / "spool")},
                "crypto": {"kek": f"auto:{logs / 'kek.key'}"},
            }
        )
    )
    cli = [sys.executable, "-m", "proxy.cli"]
    subprocess.run([*cli, "migrate", "--config", str(config)], cwd=ROOT, check=True, capture_output=True)
    key = subprocess.run(
        [*cli, "keys", "create", "--team", "bench", "--config", str(config)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    warden = Process(
        [*cli, "serve", "--no-migrate", "--config", str(config), "--port", str(port)], logs / "warden.log"
    )
    warden.start()
    wait_http(f"http://127.0.0.1:{port}/healthz")
    wait_http(f"http://127.0.0.1:{up_port}/v1/models")
    load = Load(f"http://127.0.0.1:{port}", key, rate)
    runner = threading.Thread(target=load.run, args=(seconds,))
    runner.start()
    events = []
    if kill:
        time.sleep(seconds / 3)
        warden.stop(signal.SIGKILL)
        events.append(f"SIGKILL at {seconds / 3:.0f}s")
        time.sleep(1)
        warden.start()
        wait_http(f"http://127.0.0.1:{port}/healthz")
        events.append("restarted")
    else:
        time.sleep(min(15.0, seconds / 4))
        ch.stop()
        events.append(f"ClickHouse stopped for {outage:.0f}s")
        time.sleep(outage)
        ch.start()
        wait_http(f"http://127.0.0.1:{ch_port}/ping")
        events.append("ClickHouse restarted")
    runner.join()
    warden.stop()  # SIGTERM: workers flush what they still hold
    fake.stop()
    with_row, distinct, final = rows_for(url, load.answered)
    ch.stop()
    return {
        "scenario": name,
        "answered": len(load.answered),
        "failed": load.failed,
        "with_row": with_row,
        "distinct": distinct,
        "final": final,
        "events": ", ".join(events),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration per scenario")
    parser.add_argument("--outage", type=float, default=30.0, help="ClickHouse downtime")
    parser.add_argument("--events", type=int, default=100_000, help="events for the ingestion run")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="warden-durability-"))
    ingest = [ingestion(work, f"chdb://{work / 'ingest-chdb'}", "chDB in process", args.events)]
    results = [
        scenario(work, "outage", args.rate, args.seconds, args.outage, kill=False),
        scenario(work, "sigkill", args.rate, args.seconds, args.outage, kill=True),
    ]
    print(
        f"# Warden durability — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load avg {os.getloadavg()[0]:.2f}"
    )
    print("\n| ingestion | events | emit events/s | sustained into ClickHouse events/s |\n|---|---|---|---|")
    for label, emit_rate, sustained in ingest:
        print(f"| {label} | {args.events} | {emit_rate:,.0f} | {sustained:,.0f} |")
    print(
        f"\nLoad: {args.rate:.0f} requests/s for {args.seconds:.0f} s through `warden serve` (2 workers), "
        "ClickHouse over HTTP (chDB endpoint).\n"
    )
    print(
        "| scenario | what happened | answered | errors seen by client | answered with a row | lost "
        "| rows (distinct) | rows (FINAL) |\n|---|---|---|---|---|---|---|---|"
    )
    for r in results:
        print(
            f"| {r['scenario']} | {r['events']} | {r['answered']} | {r['failed']} | {r['with_row']} | "
            f"{r['answered'] - r['with_row']} | {r['distinct']} | {r['final']} |"
        )


if __name__ == "__main__":
    main()
