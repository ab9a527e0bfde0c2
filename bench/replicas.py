"""Throughput of one Warden replica and of two, with limits and budgets in Redis.

Starts a ClickHouse HTTP endpoint (chDB, `analytics.chdb_server`), a fake upstream and `warden serve`
replicas of one worker each sharing SQLite, ClickHouse and Redis, with a key limit and a team budget
configured (large enough never to refuse), then drives them with concurrency 32 for a fixed time:
first replica A alone, then A and B round-robin. On a machine with few cores the client, the
upstream and ClickHouse compete with the replicas: read the ratio with that in mind.

    python bench/replicas.py [--seconds 8] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from loopback import ROOT, WARDEN, free_port, wait_http
from overhead import Connection

BODY = json.dumps(
    {"model": "gpt-fake", "max_tokens": 16, "messages": [{"role": "user", "content": "hello"}]}
).encode()


async def load(ports: list[int], key: str, concurrency: int, seconds: float) -> tuple[int, int]:
    done = errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(port: int) -> None:
        nonlocal done, errors
        conn = await Connection.open(port, "/v1/chat/completions", key)
        try:
            while time.perf_counter() < deadline:
                status, *_ = await conn.request(BODY)
                done += 1
                errors += status != 200
        finally:
            conn.close()

    await asyncio.gather(*(worker(ports[i % len(ports)]) for i in range(concurrency)))
    return done, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    processes: list[subprocess.Popen[bytes]] = []
    prefix = f"warden-bench:{uuid.uuid4().hex[:8]}:"

    def spawn(command: list[str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(process)
        return process

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        try:
            ch_port, up_port = free_port(), free_port()
            ch = spawn(
                [
                    sys.executable,
                    "-m",
                    "analytics.chdb_server",
                    "--path",
                    str(work / "ch"),
                    "--port",
                    str(ch_port),
                ]
            )
            wait_http(f"http://127.0.0.1:{ch_port}/ping", ch)
            password = (work / "ch.password").read_text().strip()
            fake = spawn([*WARDEN, "fake-upstream", "--port", str(up_port)])
            wait_http(f"http://127.0.0.1:{up_port}/v1/models", fake)
            config = work / "warden.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "server": {"workers": 1, "threads": 32},
                        "upstreams": [
                            {
                                "name": "fake",
                                "type": "openai",
                                "base_url": f"http://127.0.0.1:{up_port}/v1",
                                "models": ["gpt-fake"],
                            }
                        ],
                        "prices": {"gpt-fake": {"input": 0.15, "output": 0.6}},
                        "storage": {
                            "database_url": f"sqlite:///{work / 'warden.db'}",
                            "clickhouse_url": f"http://default:{password}@127.0.0.1:{ch_port}/warden",
                            "redis_url": args.redis,
                        },
                        "limits": [{"scope": "key", "rpm": 10**7, "tpm": 10**10}],
                        "budgets": [{"scope": "team", "period": "day", "hard_usd": 10**6}],
                        "traffic": {"key_prefix": prefix},
                        "crypto": {"kek": f"auto:{work / 'kek.key'}"},
                    }
                )
            )
            subprocess.run(
                [*WARDEN, "migrate", "--config", str(config)], cwd=ROOT, check=True, capture_output=True
            )
            key = subprocess.run(
                [*WARDEN, "keys", "create", "--team", "bench", "--config", str(config)],
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            ports = [free_port(), free_port()]
            for port in ports:
                server = spawn(
                    [*WARDEN, "serve", "--no-migrate", "--config", str(config), "--port", str(port)]
                )
                wait_http(f"http://127.0.0.1:{port}/healthz", server)
            asyncio.run(load(ports, key, 8, 2.0))  # warm both
            print(f"{'replicas':>8} {'concurrency':>11} {'requests/s':>10} {'errors':>6}")
            for count in (1, 2):
                done, errors = asyncio.run(load(ports[:count], key, 32, args.seconds))
                print(f"{count:8} {32:11} {done / args.seconds:10.0f} {errors:6}")
        finally:
            for process in reversed(processes):
                process.terminate()
            for process in processes:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
            import redis

            client = redis.Redis.from_url(args.redis)
            stale = list(client.scan_iter(match=prefix + "*", count=1000))
            if stale:
                client.delete(*stale)
            client.close()


if __name__ == "__main__":
    main()
