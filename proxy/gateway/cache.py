"""The exact response cache: an upstream's answer to a request, served again for an identical request.

Off unless the selected policy says `cache: {enabled: true}`. The key is a keyed hash (HMAC with a key
derived from the KEK) of the tenant, the route, the model, whether the answer streams, and the request
*after* input masking with every field that changes the answer (fields that do not, such as `user` or
`stream_options`, are left out). What is stored is the upstream's answer as it came back, in the client's
API: it only ever held placeholders (`<EMAIL_ADDRESS_1>`), never the values they stand for; output rules
and placeholder restoration run on a hit exactly as on a fresh answer, with the new request's own values.
Entries are compressed and encrypted under the tenant's data key (`KeyRing.seal_bytes`), in process
memory or in Redis alike. A failing backend is a miss, never an error.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from policies.document import CachePolicy
from proxy.compliance.crypto import CryptoError, KeyRing
from proxy.errors import bad_request
from proxy.settings import CacheSettings

log = logging.getLogger(__name__)

# Request fields that do not change the answer: left out of the key.
IGNORED_FIELDS = frozenset(
    {
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
    }
)
# A request continuing context the upstream keeps: Warden never saw all it depends on.
UPSTREAM_CONTEXT_FIELDS = ("previous_response_id", "conversation")
# The body field that carries Warden's own per-request options; removed before the request goes on.
OPTIONS_FIELD = "warden"
FORMAT_VERSION = 1


class Backend(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes, ttl_s: float) -> None: ...


class MemoryBackend:
    """Entries in this process, least recently used dropped past `max_entries`."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if found[0] <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return found[1]

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        with self._lock:
            self._entries[key] = (self._clock() + ttl_s, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class RedisBackend:
    """Entries in Redis (shared by every process and replica), expiring on Redis's own clock."""

    def __init__(self, url: str, prefix: str, timeout_s: float = 0.5) -> None:
        import redis

        self._prefix = prefix
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    def get(self, key: str) -> bytes | None:
        try:
            value = self._client.get(self._prefix + key)
        except Exception as error:  # a cache that cannot answer is a miss
            log.warning("response cache: redis read failed (%s)", type(error).__name__)
            return None
        return value if isinstance(value, bytes) else None

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        try:
            self._client.set(self._prefix + key, value, px=max(int(ttl_s * 1000), 1))
        except Exception as error:
            log.warning("response cache: redis write failed (%s)", type(error).__name__)

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """An upstream's answer as it came back (in the client's API, before output rules and restoration)."""

    streamed: bool
    upstream: str
    body: bytes  # the JSON body, or the whole event stream
    usage_chunk: bool = False  # a stream: it carries a usage event asked for by Warden or its client


@dataclass(frozen=True, slots=True)
class Lookup:
    """The cache's part in one request: its key, how long an answer is kept, and what may be done."""

    tenant: str
    key: str
    ttl_s: float
    read: bool  # a stored answer may be served
    write: bool  # the fresh answer may be stored


@dataclass(frozen=True, slots=True)
class Directive:
    """What the client asked of the cache: `Cache-Control: no-store` (or `"warden": {"cache": false}`)
    neither reads nor writes; `no-cache` skips the lookup but stores the fresh answer."""

    read: bool = True
    write: bool = True


def client_directive(cache_control: str, options: Any) -> Directive:
    """The directive of a request's `Cache-Control` header and its `warden` body field (validated)."""
    tokens = {t.strip().split("=", 1)[0].lower() for t in cache_control.split(",")}
    read = write = True
    if "no-store" in tokens:
        read = write = False
    elif "no-cache" in tokens:
        read = False
    if options is not None:
        if not isinstance(options, dict):
            raise bad_request(f"'{OPTIONS_FIELD}' must be an object.", param=OPTIONS_FIELD)
        for name, value in options.items():
            if name != "cache":
                raise bad_request(
                    f"Unknown field '{OPTIONS_FIELD}.{str(name)[:64]}' (known: cache).",
                    param=f"{OPTIONS_FIELD}.{str(name)[:64]}",
                )
            if not isinstance(value, bool):
                raise bad_request(f"'{OPTIONS_FIELD}.cache' must be true or false.", param="warden.cache")
            if not value:
                read = write = False
    return Directive(read, write)


def key_material(route: str, model: str, streamed: bool, payload: Mapping[str, Any]) -> bytes:
    """The request as the key sees it: canonical JSON of what changes the answer."""
    kept = {name: value for name, value in payload.items() if name not in IGNORED_FIELDS}
    return json.dumps(
        [FORMAT_VERSION, route, model, streamed, kept],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


class ResponseCache:
    def __init__(self, settings: CacheSettings, keyring: KeyRing, backend: Backend) -> None:
        self._settings = settings
        self._keyring = keyring
        self._backend = backend

    @classmethod
    def from_settings(cls, settings: CacheSettings, redis_url: str, keyring: KeyRing) -> ResponseCache:
        backend: Backend
        if settings.backend == "redis":
            backend = RedisBackend(redis_url, settings.key_prefix)
        else:
            backend = MemoryBackend(settings.max_entries)
        return cls(settings, keyring, backend)

    @property
    def max_body_bytes(self) -> int:
        return self._settings.max_body_bytes

    def plan(
        self,
        tenant: str,
        route: str,
        model: str,
        payload: Mapping[str, Any],
        *,
        streamed: bool,
        policy: CachePolicy,
        directive: Directive,
    ) -> Lookup | None:
        """The lookup for a (masked) request, or None when the cache has no part in it."""
        if not policy.enabled:
            return None
        if any(payload.get(name) for name in UPSTREAM_CONTEXT_FIELDS):
            return None
        if policy.deterministic_only and payload.get("temperature") != 0:
            return None
        key = self._keyring.cache_key(tenant, key_material(route, model, streamed, payload))
        ttl = policy.ttl_s or self._settings.ttl_s
        return Lookup(tenant, key, ttl, directive.read, directive.write)

    def get(self, lookup: Lookup) -> CachedAnswer | None:
        if not lookup.read:
            return None
        blob = self._backend.get(lookup.key)
        if blob is None:
            return None
        try:
            plain = self._keyring.open_bytes(lookup.tenant, blob, _aad(lookup))
            head, _, body = plain.partition(b"\n")
            meta = json.loads(head)
            return CachedAnswer(bool(meta["s"]), str(meta["u"]), body, bool(meta.get("c", False)))
        except (CryptoError, ValueError, KeyError, TypeError):
            log.warning("response cache: an entry could not be opened; treated as a miss")
            return None

    def put(self, lookup: Lookup, answer: CachedAnswer) -> bool:
        if not lookup.write or len(answer.body) > self._settings.max_body_bytes:
            return False
        head = json.dumps({"s": answer.streamed, "u": answer.upstream, "c": answer.usage_chunk}).encode()
        try:
            blob = self._keyring.seal_bytes(lookup.tenant, head + b"\n" + answer.body, _aad(lookup))
        except CryptoError:
            log.warning("response cache: no data key to seal an entry; not stored")
            return False
        self._backend.put(lookup.key, blob, lookup.ttl_s)
        return True

    def close(self) -> None:
        close = getattr(self._backend, "close", None)
        if close is not None:
            close()


def _aad(lookup: Lookup) -> bytes:
    # Bound to its tenant and key: an entry copied under another key does not open.
    return f"warden-cache-v1|{lookup.tenant}|{lookup.key}".encode()
