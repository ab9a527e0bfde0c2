"""The admission path's Redis client against the machine's Redis: replies in order, errors as values,
the database of the URL, a dead connection never reused, and scripts Redis forgot loaded again."""

from __future__ import annotations

import socket
import uuid

import pytest
import redis

from proxy.traffic.counters import Budget, Rate, RedisCounters, Slot
from proxy.traffic.resp import RespClient, RespError
from tests.proxy.traffic.conftest import REDIS_URL


def test_replies_come_back_in_order_and_errors_are_values() -> None:
    client = RespClient(REDIS_URL, 1.0)
    key = f"warden-test:{uuid.uuid4().hex}"
    try:
        replies = client.call_many([["SET", key, "é 1"], ["GET", key], ["INCR", key], ["DEL", key], ["PING"]])
        assert replies[:2] == [b"OK", "é 1".encode()]
        assert isinstance(replies[2], RespError) and "not an integer" in str(replies[2])
        assert replies[3:] == [1, b"PONG"]
        with pytest.raises(RespError):
            client.call("NOSUCHCOMMAND")
        assert client.call("PING") == b"PONG"  # the connection survived the error replies
    finally:
        client.close()


def test_the_database_of_the_url_is_selected() -> None:
    key = f"warden-test:{uuid.uuid4().hex}"
    client = RespClient("redis://127.0.0.1:6379/3", 1.0)
    other = redis.Redis.from_url("redis://127.0.0.1:6379/3")
    try:
        client.call("SET", key, 1.5)
        assert other.get(key) == b"1.5"
        assert redis.Redis.from_url(REDIS_URL).get(key) is None
    finally:
        other.delete(key)
        other.close()
        client.close()


def test_an_unreachable_redis_is_an_oserror_and_a_bad_url_a_clear_one() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OSError):
        RespClient(f"redis://127.0.0.1:{port}/0", 0.5).call("PING")
    with pytest.raises(ValueError, match="redis://"):
        RespClient("http://127.0.0.1:6379", 0.5)
    with pytest.raises(ValueError, match="number"):
        RespClient("redis://127.0.0.1:6379/zero", 0.5)


def test_a_connection_closed_under_a_request_is_not_reused() -> None:
    client = RespClient(REDIS_URL, 1.0)
    try:
        name = f"warden-test-{uuid.uuid4().hex[:8]}"
        client.call("CLIENT", "SETNAME", name)
        admin = redis.Redis.from_url(REDIS_URL)
        ids = [c["id"] for c in admin.client_list() if c.get("name") == name]
        admin.execute_command("CLIENT", "KILL", "ID", ids[0])
        admin.close()
        with pytest.raises(OSError):
            client.call("PING")
        assert client.call("PING") == b"PONG"  # a fresh connection
    finally:
        client.close()


def test_scripts_redis_forgot_are_loaded_again(redis_prefix: str) -> None:
    counters = RedisCounters(REDIS_URL, redis_prefix)
    try:
        rate, slot, budget = Rate("r", 10, 1.0), Slot("s", 2), Budget("b", 10**9, 60)
        counters.seed(budget, 0)
        assert counters.admit([rate], [slot], [budget], "t1", 5, 30).refused is None
        redis.Redis.from_url(REDIS_URL).script_flush()
        assert counters.admit([rate], [slot], [budget], "t2", 5, 30).refused is None
        assert counters.usage(budget) == (0, 10)
    finally:
        counters.close()
