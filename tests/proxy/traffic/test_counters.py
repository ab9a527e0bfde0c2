"""The shared state of limits and budgets, in memory and in Redis: the same answers, exact under races.

With Redis, each "replica" is its own client (its own connection pool): what one admits, the others
see at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from proxy.traffic.counters import Budget, Counters, CountersUnavailable, Rate, RedisCounters, Slot

Factory = Callable[[], Counters]


def test_a_rate_admits_its_limit_then_says_when_to_come_back(counters_factory: Factory) -> None:
    counters = counters_factory()
    rate = Rate("rate:a", 6, 1.0)  # one every 10 s, six at once from rest
    results = [counters.admit([rate], [], [], f"t{i}", 0, 60) for i in range(7)]
    assert [r.refused is None for r in results] == [True] * 6 + [False]
    assert [r.rates[0][0] for r in results[:6]] == [5, 4, 3, 2, 1, 0]
    assert results[0].rates[0][1] == pytest.approx(10.0, abs=0.5)  # full again in 10 s
    what, index, wait = results[6].refused  # type: ignore[misc]
    assert (what, index) == ("rate", 0)
    assert 9.0 < wait <= 10.0


def test_a_refusal_changes_nothing(counters_factory: Factory) -> None:
    """All or nothing: the key's rate is not used up by a request its budget refused."""
    counters = counters_factory()
    rate = Rate("rate:b", 2, 1.0)
    budget = Budget("budget:b", hard=100, ttl_s=60)
    counters.seed(budget, 0)
    assert counters.admit([rate], [], [budget], "t1", 80, 60).refused is None
    refused = counters.admit([rate], [], [budget], "t2", 80, 60).refused
    assert refused is not None and refused[0] == "budget" and refused[2] == 80
    counters.settle([], [], [budget], "t1", 10)  # it cost 10, not the 80 reserved
    assert counters.admit([rate], [], [budget], "t3", 80, 60).refused is None  # the rate had room left
    assert counters.usage(budget) == (10, 80)


def test_tokens_are_refunded_or_charged_on_settling(counters_factory: Factory) -> None:
    counters = counters_factory()
    tokens = Rate("rate:tpm", 1000, 900.0)
    assert counters.admit([tokens], [], [], "t1", 0, 60).refused is None
    assert counters.admit([Rate("rate:tpm", 1000, 200.0)], [], [], "t2", 0, 60).refused is not None
    counters.settle([(tokens, -850.0)], [], [], "t1", 0)  # it used 50 tokens
    admitted = counters.admit([Rate("rate:tpm", 1000, 200.0)], [], [], "t3", 0, 60)
    assert admitted.refused is None
    assert 740 <= admitted.rates[0][0] <= 750


def test_slots_are_held_until_released_or_their_lease_ends(counters_factory: Factory) -> None:
    counters = counters_factory()
    slot = Slot("slots:c", 2)
    assert counters.admit([], [slot], [], "a", 0, 60).refused is None
    assert counters.admit([], [slot], [], "b", 0, 0.3).refused is None
    assert counters.admit([], [slot], [], "c", 0, 60).refused == ("slot", 0, 2.0)
    counters.settle([], [slot], [], "a", 0)
    assert counters.admit([], [slot], [], "d", 0, 60).refused is None
    assert counters.admit([], [slot], [], "e", 0, 60).refused is not None
    time.sleep(0.35)  # "b" was never released: its replica died, say
    assert counters.admit([], [slot], [], "f", 0, 60).refused is None


def test_an_unseeded_budget_asks_to_be_seeded_once(counters_factory: Factory) -> None:
    counters = counters_factory()
    budget = Budget("budget:s", hard=1000, ttl_s=60)
    assert counters.admit([], [], [budget], "t", 10, 60).refused == ("seed", 0, 0.0)
    counters.seed(budget, 995)
    counters.seed(budget, 0)  # a second seed (another replica, a race) changes nothing
    assert counters.usage(budget) == (995, 0)
    assert counters.admit([], [], [budget], "t", 10, 60).refused == ("budget", 0, 995.0)


def test_a_budget_holds_under_64_concurrent_requests_on_two_replicas(counters_factory: Factory) -> None:
    replicas = [counters_factory(), counters_factory()]
    budget = Budget("budget:race", hard=10 * 70, ttl_s=60)  # ten requests' worst case
    replicas[0].seed(budget, 0)
    admitted: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        if replicas[i % 2].admit([], [], [budget], f"r{i}", 70, 60).refused is None:
            with lock:
                admitted.append(f"r{i}")

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(one, range(64)))
    assert len(admitted) == 10
    for token in admitted:  # each really cost 50 of its 70: room for four more (200 of 700 left)
        replicas[0].settle([], [], [budget], token, 50)
    again = [replicas[1].admit([], [], [budget], f"x{i}", 50, 60).refused is None for i in range(6)]
    assert again == [True] * 4 + [False] * 2


def test_redis_down_is_an_error_the_gate_can_decide_on() -> None:
    counters = RedisCounters("redis://127.0.0.1:1/0", "x:", timeout_s=0.2)
    with pytest.raises(CountersUnavailable):
        counters.admit([Rate("r", 1, 1.0)], [], [], "t", 0, 60)
    counters.close()


def test_an_unreadable_request_log_is_not_zero_spend() -> None:
    """Seeding a budget reads the request log; when it cannot, the budget is unknown, not empty."""
    from proxy.errors import ProxyError
    from proxy.identity.keys import Principal
    from proxy.settings import BudgetRule, Price, TrafficSettings
    from proxy.traffic.counters import MemoryCounters
    from proxy.traffic.gate import TrafficGate

    def broken(*_: object) -> int:
        raise ConnectionError("ClickHouse is down")

    budgets = (BudgetRule("team", "day", hard_usd=5),)
    principal = Principal("default", "alpha", "", "k1", "k", None)
    refusing = TrafficGate((), budgets, TrafficSettings(), MemoryCounters(), spend_source=broken)
    with pytest.raises(ProxyError) as refused:
        refusing.admit(principal, "m", {"max_tokens": 5}, 100, Price(0.15, 0.6), False)
    assert (refused.value.status, refused.value.code) == (503, "limits_unavailable")
    allowing = TrafficGate(
        (), budgets, TrafficSettings(redis_down_budgets="allow"), MemoryCounters(), spend_source=broken
    )
    assert allowing.admit(principal, "m", {"max_tokens": 5}, 100, Price(0.15, 0.6), False) is None
