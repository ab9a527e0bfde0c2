"""Slow clients: how fast `/healthz` and a chat completion answer while N connections dawdle.

Starts a fake upstream and `warden serve` (chDB, 1 worker x 64 threads) on loopback, once per worker
model (`server.worker`: `buffered`, Warden's, and `gthread`, gunicorn's own), opens N slow connections
of one kind and, while they stay open, probes `/healthz` and a chat completion one at a time, each on a
new connection. A connection the server closes is opened again, as an attacker would.

Kinds of slow connection:
  partial     part of a request head, then one more header byte every --trickle seconds (no key needed)
  body        a whole head announcing 1000 bytes of body (no key), then one body byte every --trickle s
  keyed-body  the same with a valid API key (a client on a bad link): Warden reads the body
  idle        one request answered on a kept-alive connection, then nothing

    python bench/slow_clients.py [--workers buffered,gthread] [--counts 100,300,1000]
                                 [--kinds partial,body,keyed-body,idle] [--seconds 6] [--probe-timeout 2]

A probe that gets no answer within --probe-timeout counts as failed; p99 over a few dozen probes is
close to the maximum.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from loopback import WARDEN, free_port, start_warden, wait_http

ROOT = Path(__file__).resolve().parent.parent


def opening(kind: str, key: str) -> bytes:
    """What a slow client of `kind` sends at once; the rest comes a byte at a time, or never."""
    chat = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if kind == "partial":
        return chat + b"X-Slow: "
    if kind in ("body", "keyed-body"):
        auth = f"Authorization: Bearer {key}\r\n".encode() if kind == "keyed-body" else b""
        return chat + auth + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    return b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class SlowCrowd:
    """`count` slow connections of one kind, kept open from an asyncio loop in a thread."""

    def __init__(self, port: int, kind: str, count: int, trickle_s: float, key: str) -> None:
        self.port, self.kind, self.count, self.trickle_s = port, kind, count, trickle_s
        self.opening = opening(kind, key)
        self.open = 0
        self.closed_by_server = 0
        self.stopping = False
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self.main())

    async def main(self) -> None:
        tasks = []
        for _ in range(self.count):
            tasks.append(asyncio.create_task(self.client()))
            await asyncio.sleep(0.002)  # ramp up instead of flooding the listen backlog
        await asyncio.gather(*tasks, return_exceptions=True)

    async def client(self) -> None:
        while not self.stopping:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.2)
                continue
            self.open += 1
            try:
                writer.write(self.opening)
                if self.kind == "idle":
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = next(
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    )
                    await reader.readexactly(length)
                    await reader.read(1)  # returns when the server closes it
                else:
                    while not self.stopping:
                        try:
                            await asyncio.wait_for(reader.read(4096), self.trickle_s)
                            break  # an answer (408) or the end: the server let it go
                        except TimeoutError:
                            writer.write(b"a")
            except (OSError, asyncio.IncompleteReadError, StopIteration):
                pass
            finally:
                self.open -= 1
                if not self.stopping:
                    self.closed_by_server += 1
                writer.close()

    def wait_open(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.open < self.count and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        self.stopping = True
        for task in asyncio.all_tasks(self.loop):
            self.loop.call_soon_threadsafe(task.cancel)
        self.thread.join(10)


@dataclass
class Probes:
    healthz: list[float] = field(default_factory=list)
    chat: list[float] = field(default_factory=list)
    failed: int = 0


def probe(port: int, key: str, seconds: float, timeout: float) -> Probes:
    """Alternate /healthz and a chat completion, each on a new connection, for `seconds`."""
    found = Probes()
    body = {"model": "gpt-fake", "messages": [{"role": "user", "content": "ping"}]}
    deadline = time.monotonic() + seconds
    # One client (building one costs milliseconds), no kept-alive connection: each probe connects anew,
    # as a new client would.
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}", timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0)
    ) as client:
        while time.monotonic() < deadline:
            for target in (found.healthz, found.chat):
                started = time.perf_counter()
                try:
                    if target is found.healthz:
                        reply = client.get("/healthz")
                    else:
                        reply = client.post(
                            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
                        )
                    reply.raise_for_status()
                    target.append(time.perf_counter() - started)
                except httpx.HTTPError:
                    found.failed += 1
    return found


def pct(values: list[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{1000 * ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="buffered,gthread", help="server.worker values to compare")
    parser.add_argument("--counts", default="100,300,1000", help="slow connections held open at once")
    parser.add_argument("--kinds", default="partial,body,keyed-body,idle")
    parser.add_argument("--seconds", type=float, default=6.0, help="probing time per row")
    parser.add_argument("--probe-timeout", type=float, default=2.0)
    parser.add_argument("--trickle", type=float, default=3.0, help="seconds between a slow client's bytes")
    args = parser.parse_args()
    counts = [int(n) for n in args.counts.split(",")]
    kinds = args.kinds.split(",")

    work = Path(tempfile.mkdtemp(prefix="warden-slow-"))
    up_port = free_port()
    fake = subprocess.Popen(
        [*WARDEN, "fake-upstream", "--port", str(up_port), "--words", "8"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows = []
    try:
        wait_http(f"http://127.0.0.1:{up_port}/v1/models", fake)
        for worker in args.workers.split(","):
            port = free_port()
            log = (work / f"serve-{worker}.log").open("w")
            server, key = start_warden(
                work / worker,
                f"http://127.0.0.1:{up_port}/v1",
                port,
                log,
                server={"worker": worker},
                crypto={"kek": f"auto:{work / worker / 'kek.key'}"},
            )
            try:
                probe(port, key, 1.0, 30.0)  # warm up
                for kind in kinds:
                    for count in counts:
                        crowd = SlowCrowd(port, kind, count, args.trickle, key)
                        crowd.wait_open(30)
                        time.sleep(1.0)
                        held = crowd.open
                        found = probe(port, key, args.seconds, args.probe_timeout)
                        crowd.stop()
                        rows.append((worker, kind, count, held, found, crowd.closed_by_server))
                        print(
                            json.dumps(
                                {
                                    "worker": worker,
                                    "kind": kind,
                                    "n": count,
                                    "held": held,
                                    "healthz_p50": pct(found.healthz, 50),
                                    "chat_p50": pct(found.chat, 50),
                                    "failed": found.failed,
                                }
                            ),
                            file=sys.stderr,
                            flush=True,
                        )
                        # gthread's threads come back once their clients are gone; let them.
                        probe(port, key, 0.5, 30.0)
            finally:
                server.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.wait(60)
                if server.poll() is None:
                    server.kill()
                log.close()
    finally:
        fake.terminate()
        fake.wait(10)

    print(
        "| worker | kind | slow conns | open at start | /healthz p50 | /healthz p99 | chat p50 | chat p99 "
        "| probes failed | reopened |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for worker, kind, count, held, found, reopened in rows:
        total = len(found.healthz) + len(found.chat) + found.failed
        print(
            f"| {worker} | {kind} | {count} | {held} | {pct(found.healthz, 50)} | {pct(found.healthz, 99)} "
            f"| {pct(found.chat, 50)} | {pct(found.chat, 99)} | {found.failed}/{total} | {reopened} |"
        )


if __name__ == "__main__":
    main()
