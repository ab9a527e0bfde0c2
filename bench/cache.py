"""What the response cache saves: the same request direct to the upstream, through Warden with the
cache bypassed, and through Warden answered from the cache.

Starts a fake upstream (answering after --delay-ms, as a real model takes time) and `warden serve`
with a policy that enables the cache, then sends the same chat request sequentially, a fixed number
of times per case, on one keep-alive connection, and prints latency percentiles.

    python bench/cache.py [--delay-ms 200] [--requests 200]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from loopback import ROOT, WARDEN, free_port, start_warden, wait_http

POLICY = """\
apiVersion: warden/v1
kind: Policy
metadata: {name: cached, version: "1"}
extends: default
cache: {enabled: true, ttl_s: 600}
rules: {input: [], output: []}
"""
BODY = {"model": "gpt-fake", "max_tokens": 32, "messages": [{"role": "user", "content": "what is a cache?"}]}


def measure(client: httpx.Client, url: str, headers: dict[str, str], count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        response = client.post(url, json=BODY, headers=headers)
        times.append(time.perf_counter() - start)
        assert response.status_code == 200, response.text[:200]
    return sorted(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=200.0)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    upstream_port, warden_port = free_port(), free_port()
    fake = subprocess.Popen(
        [*WARDEN, "fake-upstream", "--port", str(upstream_port), "--delay-ms", str(args.delay_ms)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with tempfile.TemporaryDirectory() as folder:
        policy = Path(folder) / "cached.yaml"
        policy.write_text(POLICY)
        warden = None
        try:
            wait_http(f"http://127.0.0.1:{upstream_port}/v1/models", fake)
            warden, key = start_warden(
                Path(folder) / "warden",
                f"http://127.0.0.1:{upstream_port}/v1",
                warden_port,
                policies={"files": [str(policy)]},
            )
            auth = {"authorization": f"Bearer {key}"}
            with httpx.Client(timeout=30) as client:
                cases = {
                    "direct to the upstream": measure(
                        client, f"http://127.0.0.1:{upstream_port}/v1/chat/completions", {}, args.requests
                    ),
                    "Warden, cache bypassed": measure(
                        client,
                        f"http://127.0.0.1:{warden_port}/v1/chat/completions",
                        {**auth, "cache-control": "no-store"},
                        args.requests,
                    ),
                    "Warden, cache hit": measure(
                        client, f"http://127.0.0.1:{warden_port}/v1/chat/completions", auth, args.requests
                    ),
                }
        finally:
            if warden is not None:
                warden.terminate()
                warden.wait(30)
            fake.terminate()
            fake.wait(10)
    print(f"upstream delay {args.delay_ms:.0f} ms, {args.requests} sequential requests per case")
    print(f"{'case':26} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, times in cases.items():
        p50, p99 = statistics.median(times), times[min(int(len(times) * 0.99), len(times) - 1)]
        print(f"{name:26} {p50 * 1e3:8.2f} {p99 * 1e3:8.2f} {statistics.mean(times) * 1e3:8.2f}")


if __name__ == "__main__":
    main()
