"""A lean HTTP/1.1 client for upstream calls: keep-alive connections (opened by `http.client`, answers
read by `answer.Answer`), shared by every serving thread without a pool-wide lock.

Measured on loopback (issue 16): httpx spent about 0.45 ms of CPU per request, and under 32 threads its
connection pool's lock was the worker's hottest spot (a third of the samples holding the GIL were
handing that lock over). Here an idle connection is taken from a deque, whose `pop` and `append` are
atomic, and a semaphore bounds how many are open: about 0.05 ms per request, and no convoy.

What it keeps from httpx: separate connect and read timeouts, a bound on open connections with a wait
as long as the connect timeout, keep-alive expiry, reuse only of connections the server has not closed,
one transparent retry when a reused connection turns out dead before any answer (the keep-alive race),
TLS with the system's trust store, and no proxy variables (Warden never read them).
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from time import monotonic, perf_counter
from urllib.parse import urlsplit

from proxy.upstreams.answer import READ_SIZE, Answer, Malformed


class PoolError(Exception):
    """The exchange failed before a complete answer; `kind` is "timeout", "unreachable" or "bad_response"."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class PooledResponse:
    """An answer whose body has not been read yet. `read()` or iterate `chunks()`, then `close()`: a fully
    read answer gives its connection back to the pool."""

    __slots__ = ("_connection", "_pool", "_raw", "head_s", "headers", "status", "wait_s")

    def __init__(self, pool: HttpPool, connection: _Connection, raw: Answer, head_s: float):
        self.status = raw.status
        # Lower-cased; a repeated header keeps its last value, which is all a relay needs.
        self.headers = {name.lower(): value for name, value in raw.headers}
        self.head_s = head_s  # request sent to response headers received
        self.wait_s = head_s  # plus the time the body took to arrive
        self._raw = raw
        self._connection: _Connection | None = connection
        self._pool = pool

    def read(self) -> bytes:
        started = perf_counter()
        try:
            body = self._raw.read()
        except (OSError, Malformed) as exc:
            self._discard()
            raise _failure(exc) from None
        self.wait_s += perf_counter() - started
        self.close()
        return body

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives (transfer encoding removed, content left as sent)."""
        try:
            while True:
                try:
                    chunk = self._raw.read1(READ_SIZE)
                except (OSError, Malformed) as exc:
                    self._discard()
                    raise _failure(exc) from None
                if not chunk:
                    return
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._raw.done and not self._raw.will_close:
            self._pool._release(connection)
        else:
            # Unread body or a server that closes: the connection cannot carry another request.
            self._pool._drop(connection)

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool._drop(connection)


class _Connection:
    __slots__ = ("conn", "idle_since")

    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self.conn = conn
        self.idle_since = 0.0

    def close(self) -> None:
        self.conn.close()


class HttpPool:
    """Connections to one origin (`base_url`'s scheme, host and port); paths are joined to its path."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int,
        keepalive_s: float = 30.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream URL must be http(s)://HOST[:PORT]/PATH, not {base_url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/") + "/"
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive_s = keepalive_s
        default_port = 443 if parts.scheme == "https" else 80
        name = self.host.encode("idna").decode("ascii") if not self.host.isascii() else self.host
        name = f"[{name}]" if ":" in name else name
        self.host_header = name if self.port == default_port else f"{name}:{self.port}"
        self._tls = tls if tls is not None or parts.scheme == "http" else ssl.create_default_context()
        self._idle: deque[_Connection] = deque()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._closed = False

    def url(self, path: str) -> str:
        netloc = self.host if ":" not in self.host else f"[{self.host}]"
        return f"{self.scheme}://{netloc}:{self.port}{self.base_path}{path}"

    def request(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> PooledResponse:
        """Send and wait for the response headers; raises PoolError."""
        try:
            head = request_head(method, self.base_path + path, self.host_header, headers, len(body))
        except ValueError:
            # The message would quote the value, which may be a credential (a mistyped API key).
            raise PoolError("bad_response", "a request header has characters HTTP cannot carry") from None
        if not self._slots.acquire(timeout=self.connect_timeout):
            raise PoolError("timeout", f"no free connection to {self.host}:{self.port} within the timeout")
        connection = self._take_idle()
        reused = connection is not None
        try:
            while True:
                if connection is None:
                    connection = self._connect()
                sock = connection.conn.sock
                try:
                    started = perf_counter()
                    sock.sendall(head + body)
                    raw = Answer(sock)
                    raw.begin(method)
                    return PooledResponse(self, connection, raw, perf_counter() - started)
                except (ConnectionError, Malformed) as exc:
                    connection.close()
                    connection = None
                    # A kept-alive connection the server had just closed: nothing was processed, and a
                    # fresh connection gets one more try. A fresh one failing is the answer.
                    if not reused:
                        raise _failure(exc) from None
                    reused = False
        except PoolError:
            self._slots.release()
            raise
        except (OSError, Malformed) as exc:
            if connection is not None:
                connection.close()
            self._slots.release()
            raise _failure(exc) from None

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    def _take_idle(self) -> _Connection | None:
        now = monotonic()
        while True:
            try:
                connection = self._idle.pop()
            except IndexError:
                return None
            if now - connection.idle_since < self.keepalive_s and _still_open(connection.conn):
                return connection
            connection.close()

    def _connect(self) -> _Connection:
        conn: http.client.HTTPConnection
        if self.scheme == "https":
            conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.connect_timeout, context=self._tls
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout)
        try:
            conn.connect()
        except BaseException:
            conn.close()  # a TLS handshake that failed leaves the plain socket open
            raise
        sock = conn.sock
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self.read_timeout)
        return _Connection(conn)

    def _release(self, connection: _Connection) -> None:
        if self._closed:
            connection.close()
        else:
            connection.idle_since = monotonic()
            self._idle.append(connection)
        self._slots.release()

    def _drop(self, connection: _Connection) -> None:
        connection.close()
        self._slots.release()


_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def request_head(method: str, target: str, host: str, headers: Mapping[str, str], length: int) -> bytes:
    """The request line and headers, as http.client would send them (Host, `Accept-Encoding: identity`
    and Content-Length unless given), in one buffer for one `sendall`. http.client's `request` cost about
    5% of a worker's CPU per proxied request, most of it in putheader's per-call checks (issue 16).

    Raises ValueError for a name that is not an HTTP token, or a value with a control character
    (a line break would inject headers) or outside Latin-1."""
    given = {name.lower() for name in headers}
    lines = [f"{method} {target} HTTP/1.1"]
    if "host" not in given:
        lines.append(f"Host: {host}")
    if "accept-encoding" not in given:
        lines.append("Accept-Encoding: identity")
    if "content-length" not in given and "transfer-encoding" not in given:
        lines.append(f"Content-Length: {length}")
    for name, value in headers.items():
        if not name or not _TOKEN.issuperset(name.encode("latin-1")):
            raise ValueError("header name is not a token")
        if not value.isprintable() and any(c in value for c in "\r\n\x00"):
            raise ValueError("header value holds a line break")
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection is readable only when the server closed it (or sent garbage)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _failure(exc: BaseException) -> PoolError:
    if isinstance(exc, TimeoutError | socket.timeout):
        kind = "timeout"
    elif isinstance(exc, OSError):  # refused, reset, or ended inside the answer (ClosedEarly, Incomplete)
        kind = "unreachable"
    else:
        kind = "bad_response"
    # The exception's own text: it carries neither the request body nor credentials.
    return PoolError(kind, f"{type(exc).__name__}: {exc}")
