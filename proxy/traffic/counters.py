"""The shared state of limits and budgets: one atomic admission and one settlement per request.

Two implementations with the same semantics: `MemoryCounters` (one process) and `RedisCounters`
(every replica sees one state; each operation is a single Lua script, so it is atomic and costs one
round trip). An admission checks every rate bucket, concurrency slot and budget of the request
together and changes nothing unless all of them allow it: a request refused by its team's budget
does not use up its key's rate.

- Rates are GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp): a limit of
  N per minute allows N at once from rest and then one every 60/N s; a request costs 1 (requests) or
  its tokens (tokens). Exact across replicas: the state is one value changed atomically.
- Concurrency slots are leases: a sorted set of request tokens with their expiry, so a replica that
  dies holding slots gives them back when the lease ends.
- Budgets hold what was spent (micro-USD) and the open reservations (token -> amount, with a lease).
  A request reserves its worst case; settling replaces the reservation by the real cost.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from proxy.traffic.resp import RespClient, RespError

WINDOW_S = 60.0  # limits are per minute


@dataclass(frozen=True, slots=True)
class Rate:
    """A per-minute bucket: `limit` units a minute, this request costs `cost` units."""

    key: str
    limit: int
    cost: float


@dataclass(frozen=True, slots=True)
class Slot:
    key: str
    limit: int


@dataclass(frozen=True, slots=True)
class Budget:
    key: str
    hard: int  # micro-USD; what spent + reserved may not exceed
    ttl_s: int  # how long the period's state is kept (0: for ever)


@dataclass(frozen=True, slots=True)
class Admission:
    """`refused`: None, or ("rate"|"slot"|"budget"|"seed", index, detail). For a refused rate, detail
    is the seconds until it would fit; for a budget, spent + reserved; "seed" means a budget has no
    spend recorded yet and must be seeded before the admission is tried again. `rates`: for each
    rate, (remaining units, seconds until full) after this request."""

    refused: tuple[str, int, float] | None
    rates: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Settlement:
    """What one finished request gives back (see `Counters.settle`)."""

    rates: tuple[tuple[Rate, float], ...]
    slots: tuple[Slot, ...]
    budgets: tuple[Budget, ...]
    token: str
    spent: int


class Counters(Protocol):
    # True when settling costs a round trip worth taking off the request path (see gate.py).
    deferred: bool

    def admit(
        self,
        rates: Sequence[Rate],
        slots: Sequence[Slot],
        budgets: Sequence[Budget],
        token: str,
        amount: int,
        lease_s: float,
        settle_first: Sequence[Settlement] = (),
    ) -> Admission:
        """`settle_first` are applied before the admission, in the same round trip."""

    def settle_many(self, settlements: Sequence[Settlement]) -> None: ...

    def settle(
        self,
        rates: Sequence[tuple[Rate, float]],
        slots: Sequence[Slot],
        budgets: Sequence[Budget],
        token: str,
        spent: int,
    ) -> None:
        """Give the slots back, replace the budgets' reservation by `spent`, and correct each rate
        by its units (a refund when negative, a charge when positive)."""

    def seed(self, budget: Budget, spent: int) -> None:
        """Record the spend so far of a budget that has none (after a restart, from the request log)."""

    def usage(self, budget: Budget) -> tuple[int, int]:
        """(spent, reserved) of a budget now."""

    def close(self) -> None: ...


class CountersUnavailable(Exception):
    """The shared state cannot be reached (Redis down)."""


# -- one process -------------------------------------------------------------------------------


class MemoryCounters:
    deferred = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}
        self._slots: dict[str, dict[str, float]] = {}
        self._spent: dict[str, int] = {}
        self._reserved: dict[str, dict[str, tuple[int, float]]] = {}

    def admit(
        self,
        rates: Sequence[Rate],
        slots: Sequence[Slot],
        budgets: Sequence[Budget],
        token: str,
        amount: int,
        lease_s: float,
        settle_first: Sequence[Settlement] = (),
    ) -> Admission:
        self.settle_many(settle_first)
        with self._lock:
            now = time.monotonic()
            new_tats = []
            for index, rate in enumerate(rates):
                interval = WINDOW_S / rate.limit
                tat = max(self._tat.get(rate.key, now), now) + rate.cost * interval
                over = tat - now - WINDOW_S
                if over > 1e-9:
                    return Admission(("rate", index, over))
                new_tats.append(tat)
            for index, slot in enumerate(slots):
                held = self._live(self._slots.setdefault(slot.key, {}), now)
                if len(held) >= slot.limit:
                    return Admission(("slot", index, float(len(held))))
            for index, budget in enumerate(budgets):
                if budget.key not in self._spent:
                    return Admission(("seed", index, 0.0))
                reserved = self._open(budget.key, now)
                total = self._spent[budget.key] + reserved
                if total + amount > budget.hard:
                    return Admission(("budget", index, float(total)))
            for rate, tat in zip(rates, new_tats, strict=True):
                self._tat[rate.key] = tat
            for slot in slots:
                self._slots[slot.key][token] = now + lease_s
            for budget in budgets:
                self._reserved.setdefault(budget.key, {})[token] = (amount, now + lease_s)
            return Admission(
                None, tuple(_rate_state(r, t, now) for r, t in zip(rates, new_tats, strict=True))
            )

    def settle(
        self,
        rates: Sequence[tuple[Rate, float]],
        slots: Sequence[Slot],
        budgets: Sequence[Budget],
        token: str,
        spent: int,
    ) -> None:
        with self._lock:
            now = time.monotonic()
            for rate, units in rates:
                tat = self._tat.get(rate.key, now) + units * WINDOW_S / rate.limit
                self._tat[rate.key] = max(tat, now)
            for slot in slots:
                self._slots.get(slot.key, {}).pop(token, None)
            for budget in budgets:
                self._reserved.get(budget.key, {}).pop(token, None)
                self._spent[budget.key] = self._spent.get(budget.key, 0) + spent

    def settle_many(self, settlements: Sequence[Settlement]) -> None:
        for s in settlements:
            self.settle(s.rates, s.slots, s.budgets, s.token, s.spent)

    def seed(self, budget: Budget, spent: int) -> None:
        with self._lock:
            self._spent.setdefault(budget.key, spent)

    def usage(self, budget: Budget) -> tuple[int, int]:
        with self._lock:
            return self._spent.get(budget.key, 0), self._open(budget.key, time.monotonic())

    def close(self) -> None:
        pass

    @staticmethod
    def _live(held: dict[str, float], now: float) -> dict[str, float]:
        for token in [t for t, until in held.items() if until <= now]:
            del held[token]
        return held

    def _open(self, key: str, now: float) -> int:
        open_ = self._reserved.get(key, {})
        for token in [t for t, (_, until) in open_.items() if until <= now]:
            del open_[token]
        return sum(amount for amount, _ in open_.values())


def _rate_state(rate: Rate, tat: float, now: float) -> tuple[int, float]:
    interval = WINDOW_S / rate.limit
    return max(int((WINDOW_S - (tat - now)) / interval + 1e-9), 0), max(tat - now, 0.0)


# -- Redis -------------------------------------------------------------------------------------

# KEYS: rate keys, then slot keys, then for each budget: its hash, its reservation expiries (zset),
# its reservation amounts (hash). ARGV: counts (rates, slots, budgets), token, amount, lease, then
# (limit, cost) per rate, limit per slot, (hard, ttl) per budget. Numbers go back as strings:
# Redis truncates Lua numbers to integers.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local nr, ns, nb = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local token, amount, lease = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local a = 7
local tats = {}
for i = 1, nr do
  local limit, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  tat = tat + cost * 60.0 / limit
  local over = tat - now - 60.0
  if over > 1e-9 then return {'rate', tostring(i - 1), tostring(over)} end
  tats[i] = tat
end
for i = 1, ns do
  local key = KEYS[nr + i]
  local limit = tonumber(ARGV[a])
  a = a + 1
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local held = redis.call('ZCARD', key)
  if held >= limit then return {'slot', tostring(i - 1), tostring(held)} end
end
local b0 = nr + ns
for i = 1, nb do
  local main, until_, amounts = KEYS[b0 + 3 * i - 2], KEYS[b0 + 3 * i - 1], KEYS[b0 + 3 * i]
  local hard = tonumber(ARGV[a + 2 * (i - 1)])
  local spent = redis.call('HGET', main, 'spent')
  if not spent then return {'seed', tostring(i - 1), '0'} end
  for _, gone in ipairs(redis.call('ZRANGEBYSCORE', until_, '-inf', now)) do
    redis.call('HDEL', amounts, gone)
    redis.call('ZREM', until_, gone)
  end
  local reserved = 0
  for _, v in ipairs(redis.call('HVALS', amounts)) do reserved = reserved + tonumber(v) end
  local total = tonumber(spent) + reserved
  if total + amount > hard then return {'budget', tostring(i - 1), tostring(total)} end
end
local out = {'ok'}
for i = 1, nr do
  local limit = tonumber(ARGV[7 + 2 * (i - 1)])
  redis.call('SET', KEYS[i], tostring(tats[i]), 'PX', math.ceil((tats[i] - now) * 1000) + 1000)
  local interval = 60.0 / limit
  out[#out + 1] = tostring(math.floor((60.0 - (tats[i] - now)) / interval + 1e-9))
  out[#out + 1] = tostring(tats[i] - now)
end
for i = 1, ns do
  redis.call('ZADD', KEYS[nr + i], now + lease, token)
  redis.call('PEXPIRE', KEYS[nr + i], math.ceil(lease * 1000) + 1000)
end
for i = 1, nb do
  local main, until_, amounts = KEYS[b0 + 3 * i - 2], KEYS[b0 + 3 * i - 1], KEYS[b0 + 3 * i]
  local ttl = tonumber(ARGV[a + 2 * (i - 1) + 1])
  redis.call('HSET', amounts, token, amount)
  redis.call('ZADD', until_, now + lease, token)
  if ttl > 0 then
    redis.call('EXPIRE', main, ttl)
    redis.call('EXPIRE', until_, ttl)
    redis.call('EXPIRE', amounts, ttl)
  end
end
return out
"""

# KEYS as for _ADMIT. ARGV: counts, token, spent, then (limit, units) per rate.
_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local nr, ns, nb = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local token, spent = ARGV[4], tonumber(ARGV[5])
for i = 1, nr do
  local limit, units = tonumber(ARGV[6 + 2 * (i - 1)]), tonumber(ARGV[7 + 2 * (i - 1)])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  tat = tat + units * 60.0 / limit
  if tat > now then
    redis.call('SET', KEYS[i], tostring(tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
  else
    redis.call('DEL', KEYS[i])
  end
end
for i = 1, ns do redis.call('ZREM', KEYS[nr + i], token) end
local b0 = nr + ns
for i = 1, nb do
  local main, until_, amounts = KEYS[b0 + 3 * i - 2], KEYS[b0 + 3 * i - 1], KEYS[b0 + 3 * i]
  redis.call('HDEL', amounts, token)
  redis.call('ZREM', until_, token)
  redis.call('HINCRBY', main, 'spent', spent)
end
return 1
"""

_USAGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local reserved = 0
for _, token in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')) do
  reserved = reserved + tonumber(redis.call('HGET', KEYS[3], token) or '0')
end
return {redis.call('HGET', KEYS[1], 'spent') or '0', tostring(reserved)}
"""


@dataclass(frozen=True, slots=True)
class _Script:
    text: str
    sha: str

    @classmethod
    def of(cls, text: str) -> _Script:
        return cls(text, hashlib.sha1(text.encode()).hexdigest())  # noqa: S324 - Redis names scripts so


class RedisCounters:
    deferred = True

    def __init__(self, url: str, prefix: str = "warden:", timeout_s: float = 0.5) -> None:
        self._redis = RespClient(url, timeout_s)
        self._prefix = prefix
        self._admit = _Script.of(_ADMIT)
        self._settle = _Script.of(_SETTLE)
        self._usage = _Script.of(_USAGE)

    def _keys(self, rates: Sequence[Rate], slots: Sequence[Slot], budgets: Sequence[Budget]) -> list[str]:
        p = self._prefix
        keys = [p + r.key for r in rates] + [p + s.key for s in slots]
        for budget in budgets:
            keys += [p + budget.key, p + budget.key + ":until", p + budget.key + ":amounts"]
        return keys

    def admit(
        self,
        rates: Sequence[Rate],
        slots: Sequence[Slot],
        budgets: Sequence[Budget],
        token: str,
        amount: int,
        lease_s: float,
        settle_first: Sequence[Settlement] = (),
    ) -> Admission:
        args: list[Any] = [len(rates), len(slots), len(budgets), token, amount, lease_s]
        for rate in rates:
            args += [rate.limit, rate.cost]
        args += [slot.limit for slot in slots]
        for budget in budgets:
            args += [budget.hard, budget.ttl_s]
        keys = self._keys(rates, slots, budgets)
        # One round trip: what finished requests give back, then this admission, in that order.
        calls = [self._settle_call(s) for s in settle_first] + [(self._admit, keys, args)]
        reply = [_text(v) for v in self._pipelined(calls)[-1]]
        if reply[0] != "ok":
            return Admission((reply[0], int(reply[1]), float(reply[2])))
        numbers = reply[1:]
        return Admission(
            None, tuple((int(numbers[i]), float(numbers[i + 1])) for i in range(0, len(numbers), 2))
        )

    def settle(
        self,
        rates: Sequence[tuple[Rate, float]],
        slots: Sequence[Slot],
        budgets: Sequence[Budget],
        token: str,
        spent: int,
    ) -> None:
        self.settle_many([Settlement(tuple(rates), tuple(slots), tuple(budgets), token, spent)])

    def settle_many(self, settlements: Sequence[Settlement]) -> None:
        if settlements:
            self._pipelined([self._settle_call(s) for s in settlements])

    def _settle_call(self, s: Settlement) -> tuple[_Script, list[str], list[Any]]:
        args: list[Any] = [len(s.rates), len(s.slots), len(s.budgets), s.token, s.spent]
        for rate, units in s.rates:
            args += [rate.limit, units]
        return self._settle, self._keys([r for r, _ in s.rates], s.slots, s.budgets), args

    def _pipelined(self, calls: list[tuple[_Script, list[str], list[Any]]]) -> list[Any]:
        """Several scripts in one round trip (by their SHA; loaded again if Redis lost them)."""
        commands = [["EVALSHA", script.sha, len(keys), *keys, *args] for script, keys, args in calls]
        for attempt in range(2):
            replies = self._call_many(commands)
            errors = [r for r in replies if isinstance(r, RespError)]
            if not errors:
                return replies
            if attempt or not all(str(e).startswith("NOSCRIPT") for e in errors):
                raise CountersUnavailable(f"Redis: {str(errors[0]).split(' ', 1)[0]}")
            # A restarted or flushed Redis forgot the scripts; a NOSCRIPT changed nothing.
            self._call_many([["SCRIPT", "LOAD", s.text] for s in (self._admit, self._settle, self._usage)])
        raise AssertionError("unreachable")

    def _call_many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        try:
            return self._redis.call_many(commands)
        except OSError as exc:
            raise CountersUnavailable(f"Redis: {type(exc).__name__}") from None

    def seed(self, budget: Budget, spent: int) -> None:
        key = self._prefix + budget.key
        commands: list[list[Any]] = [["MULTI"], ["HSETNX", key, "spent", spent]]
        if budget.ttl_s:
            commands.append(["EXPIRE", key, budget.ttl_s])
        replies = self._call_many([*commands, ["EXEC"]])
        if any(isinstance(r, RespError) for r in replies):
            raise CountersUnavailable("Redis: the budget could not be seeded")

    def usage(self, budget: Budget) -> tuple[int, int]:
        spent, reserved = self._pipelined([(self._usage, self._keys([], [], [budget]), [])])[0]
        return int(_text(spent)), int(float(_text(reserved)))

    def close(self) -> None:
        self._redis.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def retry_after_s(seconds: float) -> int:
    """Whole seconds for `retry-after`: never 0 for a refusal (a client would retry at once)."""
    return max(1, math.ceil(seconds))
