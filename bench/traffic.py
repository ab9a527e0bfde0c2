"""What limits and budgets add to a request: one admission plus one settlement, in memory and in Redis.

Runs the real `TrafficGate` with a key limit (rpm, tpm, concurrent) and a team budget, as the forwarder
calls it, for a fixed time per case, with 1 and 32 threads, and prints the latency of admit + settle
(p50, p99) and the rate. Redis is the one at --redis (loopback here); its keys get a prefix of their
own and are deleted afterwards.

    python -m bench.traffic [--seconds 5] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid

from proxy.identity.keys import Principal
from proxy.settings import BudgetRule, LimitRule, Price, TrafficSettings
from proxy.traffic.counters import Counters, MemoryCounters, RedisCounters
from proxy.traffic.gate import TrafficGate

LIMITS = (LimitRule("key", rpm=10**8, tpm=10**12, concurrent=10**6),)
BUDGETS = (BudgetRule("team", "month", hard_usd=10**8, soft_usd=0),)
PRICE = Price(0.15, 0.6)
PAYLOAD = {"model": "gpt-fake", "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}


def run(counters: Counters, threads: int, seconds: float) -> tuple[list[float], float]:
    gate = TrafficGate(LIMITS, BUDGETS, TrafficSettings(), counters, spend_source=lambda *_: 0)
    samples: list[list[float]] = [[] for _ in range(threads)]
    stop = time.perf_counter() + seconds

    def work(index: int) -> None:
        principal = Principal("default", "alpha", "", f"key{index % 4}", "k", None)
        mine = samples[index]
        while time.perf_counter() < stop:
            start = time.perf_counter()
            ticket = gate.admit(principal, "gpt-fake", PAYLOAD, 120, PRICE, False)
            assert ticket is not None
            gate.settle(ticket, 40, 12)
            mine.append(time.perf_counter() - start)

    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    every = sorted(s for chunk in samples for s in chunk)
    return every, len(every) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    prefix = f"warden-bench:{uuid.uuid4().hex[:8]}:"
    print(f"{'state':8} {'threads':>7} {'p50 ms':>8} {'p99 ms':>8} {'admissions/s':>13}")
    redis_counters: list[RedisCounters] = []
    try:
        for name in ("memory", "redis"):
            for threads in (1, 32):
                if name == "memory":
                    counters: Counters = MemoryCounters()
                else:
                    counters = RedisCounters(args.redis, prefix)
                    redis_counters.append(counters)
                latencies, rate = run(counters, threads, args.seconds)
                p50 = statistics.median(latencies) * 1e3
                p99 = latencies[int(len(latencies) * 0.99)] * 1e3
                print(f"{name:8} {threads:7} {p50:8.3f} {p99:8.3f} {rate:13.0f}")
    finally:
        import redis

        client = redis.Redis.from_url(args.redis)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
        for counters in redis_counters:
            counters.close()


if __name__ == "__main__":
    main()
