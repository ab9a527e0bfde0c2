"""Proxy overhead: the same requests direct to a fake upstream and through Warden.

Starts a fake OpenAI upstream and `warden serve` (gunicorn, threaded workers, ClickHouse logging on, chDB)
as separate processes on loopback, then drives both with a small asyncio HTTP/1.1 client at
concurrency 1 and 32, JSON and streaming. Added latency = through Warden - direct, per percentile.

    python bench/overhead.py [--seconds 8] [--sequential 400] [--concurrency 32]
                              [--api chat|responses|messages]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from loopback import free_port, start_warden, wait_http

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Sample:
    latency: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    overhead_header: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0
    cpu_per_request: float = 0.0


class Connection:
    """A keep-alive HTTP/1.1 connection that understands content-length and chunked replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> None:
        self.reader, self.writer, self.head = reader, writer, head

    @classmethod
    async def open(cls, port: int, path: str, key: str | None) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        if key:
            head += f"Authorization: Bearer {key}\r\n"
        return cls(reader, writer, head.encode())

    async def request(self, body: bytes) -> tuple[int, float, float, float | None]:
        started = time.perf_counter()
        self.writer.write(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            if b":" in line:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
        first: float | None = None
        if b"content-length" in headers:
            await self.reader.readexactly(int(headers[b"content-length"]))
            first = time.perf_counter()
        else:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                chunk = await self.reader.readexactly(size + 2)
                if first is None and b"data:" in chunk:
                    first = time.perf_counter()
        done = time.perf_counter()
        overhead = headers.get(b"x-warden-overhead-ms")
        return status, done - started, (first or done) - started, float(overhead) if overhead else None

    def close(self) -> None:
        self.writer.close()


async def run_load(
    port: int, path: str, key: str | None, body: bytes, concurrency: int, seconds: float, max_requests: int
) -> Sample:
    sample = Sample()
    deadline = time.perf_counter() + seconds
    sent = 0

    async def worker() -> None:
        nonlocal sent
        conn = await Connection.open(port, path, key)
        try:
            while time.perf_counter() < deadline and sent < max_requests:
                sent += 1
                status, latency, ttft, overhead = await conn.request(body)
                if status != 200:
                    sample.errors += 1
                    continue
                sample.latency.append(latency)
                sample.ttft.append(ttft)
                if overhead is not None:
                    sample.overhead_header.append(overhead / 1000)
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    sample.elapsed = time.perf_counter() - started
    return sample


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (the gunicorn workers)."""
    total = 0.0
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for each in [str(pid), *children]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


PROMPT = "Say something short."
# client API -> (path, model answered natively, request without model)
API_REQUESTS: dict[str, tuple[str, str, dict[str, object]]] = {
    "chat": ("/v1/chat/completions", "gpt-fake", {"messages": [{"role": "user", "content": PROMPT}]}),
    "responses": ("/v1/responses", "gpt-fake", {"input": PROMPT}),
    "messages": (
        "/v1/messages",
        "claude-fake",
        {"max_tokens": 64, "messages": [{"role": "user", "content": PROMPT}]},
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each concurrent run")
    parser.add_argument("--sequential", type=int, default=400, help="requests per concurrency-1 run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--chunks", type=int, default=16, help="SSE events per streamed reply")
    parser.add_argument("--threads", type=int, default=64, help="gunicorn threads for Warden")
    parser.add_argument(
        "--api",
        choices=("chat", "responses", "messages"),
        default="chat",
        help="the client API; responses and messages are measured at concurrency 1, passed through to an "
        "upstream that speaks it and translated to an upstream that speaks only chat completions",
    )
    parser.add_argument(
        "--limits",
        metavar="REDIS_URL",
        help="also enforce a key limit (rpm, tpm, concurrent) and a team budget, kept in this Redis "
        "(never refusing: what admission and settlement cost)",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="warden-bench-"))
    up_port, warden_port = free_port(), free_port()
    warden = [sys.executable, "-m", "proxy.cli"]
    procs: list[subprocess.Popen] = []
    try:
        fake = subprocess.Popen(
            [*warden, "fake-upstream", "--port", str(up_port), "--chunks", str(args.chunks), "--words", "24"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(fake)
        wait_http(f"http://127.0.0.1:{up_port}/v1/models", fake)
        log = (work / "serve.log").open("w")
        upstream = f"http://127.0.0.1:{up_port}/v1"
        upstreams = [
            {"name": "fake", "type": "openai", "base_url": upstream, "models": ["gpt-fake"]},
            {"name": "claude", "type": "anthropic", "base_url": upstream, "models": ["claude-fake"]},
            {
                "name": "chat-only",
                "type": "openai",
                "base_url": upstream,
                "models": ["chat-fake"],
                "apis": ["chat.completions"],
            },
        ]
        traffic: dict[str, object] = {}
        if args.limits:
            traffic = {
                "limits": [{"scope": "key", "rpm": 10**7, "tpm": 10**10, "concurrent": 10**4}],
                "budgets": [{"scope": "team", "period": "day", "hard_usd": 10**6}],
                "prices": {
                    m: {"input": 0.15, "output": 0.6} for m in ("gpt-fake", "claude-fake", "chat-fake")
                },
                "traffic": {"key_prefix": f"warden-bench:{os.getpid()}:"},
            }
        server, key = start_warden(
            work,
            upstream,
            warden_port,
            log,
            server={"threads": args.threads},
            upstreams=upstreams,
            **traffic,
            **({"storage": {"redis_url": args.limits}} if args.limits else {}),
        )
        procs.append(server)

        path, native_model, request = API_REQUESTS[args.api]
        modes = (
            {"pass-through": native_model}
            if args.api == "chat"
            else {
                "pass-through": native_model,
                "translated": "chat-fake",
            }
        )
        concurrencies = (1, args.concurrency) if args.api == "chat" else (1,)
        rows = []
        for mode, model in modes.items():
            for kind in ("json", "stream"):
                streamed = {"stream": True} if kind == "stream" else {}
                body = json.dumps({**request, "model": model, **streamed}).encode()
                # The direct baseline is the same API answered natively by the upstream.
                direct_body = json.dumps({**request, "model": native_model, **streamed}).encode()
                for concurrency in concurrencies:
                    seconds = 600.0 if concurrency == 1 else args.seconds
                    limit = args.sequential if concurrency == 1 else 10**9
                    # Warm both paths (connection pools, first chDB insert) before measuring.
                    asyncio.run(run_load(up_port, path, None, direct_body, 4, 1.0, 50))
                    asyncio.run(run_load(warden_port, path, key, body, 4, 1.0, 50))
                    direct = asyncio.run(
                        run_load(up_port, path, None, direct_body, concurrency, seconds, limit)
                    )
                    cpu_before = cpu_seconds(server.pid)
                    via = asyncio.run(run_load(warden_port, path, key, body, concurrency, seconds, limit))
                    via.cpu_per_request = (cpu_seconds(server.pid) - cpu_before) / max(len(via.latency), 1)
                    rows.append((f"{args.api} {mode} {kind}", concurrency, direct, via))
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        log.close()
        logged = subprocess.run(
            [
                sys.executable,
                "-c",
                "import clickhouse_connect as c; print(c.get_client(dsn='chdb://"
                + str(work / "clickhouse")
                + "').query('SELECT count() FROM requests').result_rows[0][0])",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    finally:
        for process in procs:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    print(f"# Warden proxy overhead — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"# machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, load avg "
        f"{os.getloadavg()[0]:.2f}; Warden: gunicorn gthread 1 worker x {args.threads} threads, "
        f"ClickHouse logging on (chDB); fake upstream: 24 words, {args.chunks} SSE events"
    )
    print()
    header = (
        "| kind | conc | requests | direct p50 ms | via p50 ms | added p50 ms | added p99 ms "
        "| added TTFT p50 ms | self-reported p50 ms | Warden CPU ms/req "
        "| direct req/s | Warden req/s | errors |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for kind, concurrency, direct, via in rows:
        added50 = (pct(via.latency, 50) - pct(direct.latency, 50)) * 1000
        added99 = (pct(via.latency, 99) - pct(direct.latency, 99)) * 1000
        ttft = (pct(via.ttft, 50) - pct(direct.ttft, 50)) * 1000 if kind.endswith("stream") else float("nan")
        print(
            f"| {kind} | {concurrency} | {len(via.latency)} | {pct(direct.latency, 50) * 1000:.2f} | "
            f"{pct(via.latency, 50) * 1000:.2f} | {added50:.2f} | {added99:.2f} | "
            f"{'' if kind.endswith('json') else f'{ttft:.2f}'} | "
            f"{statistics.median(via.overhead_header) * 1000 if via.overhead_header else float('nan'):.3f} | "
            f"{via.cpu_per_request * 1000:.2f} | "
            f"{len(direct.latency) / direct.elapsed:.0f} | {len(via.latency) / via.elapsed:.0f} | "
            f"{direct.errors + via.errors} |"
        )
    sent = sum(len(v.latency) + v.errors for _, _, _, v in rows)
    print(f"\nrows logged in ClickHouse: {logged} (requests through Warden incl. warm-up: {sent + 4 * 50})")


if __name__ == "__main__":
    main()
