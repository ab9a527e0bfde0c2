"""Shared state for the traffic tests: the machine's Redis under a prefix of their own, or memory."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from proxy.traffic.counters import Counters, MemoryCounters, RedisCounters

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A prefix no other test uses; its keys are deleted afterwards."""
    prefix = f"warden-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=["memory", "redis"])
def counters_factory(request: pytest.FixtureRequest, redis_prefix: str) -> Iterator[object]:
    """Makes counters that share one state: memory (one object) or Redis (one per 'replica')."""
    made: list[Counters] = []
    shared = MemoryCounters()

    def make() -> Counters:
        counters: Counters = shared if request.param == "memory" else RedisCounters(REDIS_URL, redis_prefix)
        made.append(counters)
        return counters

    yield make
    for counters in made:
        counters.close()
