"""The gunicorn worker `warden serve` runs: gthread, except that a thread takes a connection only once
its request has arrived.

gunicorn's gthread worker hands a connection to a pool thread as soon as it is readable; the thread then
blocks reading the head (and Flask the body) at whatever pace the client sends. 64 clients that send a
byte a minute hold the 64 threads, and nothing else, `/healthz` included, is answered (issue 13).

This worker reads in its event loop instead, without blocking and without a thread:

- A new connection, or a kept-alive one that turns readable, is parked on the poller until its head has
  arrived (through the blank line), then a `Content-Length` body of at most `server.max_body_bytes`.
  The bytes go back in front of gunicorn's parser (its `Unreader`), so the thread parses from memory.
- The head must be complete within `server.header_timeout_s` of the first chance to send it (a trickle
  of bytes does not extend it) and within `MAX_HEAD_BYTES`; a body may pause `server.client_timeout_s`
  between reads. Past either the connection is closed (408 or 431 when a request had begun).
- At most `server.max_connections` connections are open per worker (gunicorn's `worker_connections`:
  past it the worker stops accepting and new ones wait in the listen backlog), and the bodies buffered
  here total at most threads x `max_body_bytes`, what the threads could hold themselves.
- What a thread still reads from the client — a chunked body, one behind `Expect: 100-continue`, one
  that would pass that total — and every write to it run under `server.client_timeout_s`, so a client
  that stalls mid-request, or stops reading a stream, frees its thread after that long.
- Kept-alive connections wait on the poller between requests, as in gthread. A connection closed after
  its response lingers there too (up to `_LINGER_S`, for the client's unread bytes): gthread lingers
  with a blocking read in its event loop, so each client that never closes its end stalled every other.

A thread that has just answered on a kept-alive connection waits up to `_HOT_WAIT_S` for the client's
next request itself, when no request is waiting for a thread: a client in a loop sends it within a
fraction of a millisecond, and serving it in place saves the two hand-offs between the loop and the
thread (a pipe write, a poller registration, a queue and a wake-up each way) that are a good part of the
latency Warden adds (issue 16). The same rule holds there: the thread serves only a request whose head
and body have fully arrived; anything less goes back to the loop with the bytes read so far.

Only plain HTTP/1.x is read this way: TLS, the PROXY protocol, h2c and uWSGI are refused at start
(Warden sits behind a TLS terminator when it needs TLS; see the README).
"""

from __future__ import annotations

import contextlib
import resource
import select
import selectors
import socket
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from functools import partial
from typing import Any, Literal

from gunicorn import http, util
from gunicorn.http import wsgi
from gunicorn.workers.gthread import TConn, ThreadWorker

# Request line and headers, at most. nginx's default buffers hold 33 KiB and gunicorn's own per-line
# limits (4 KiB request line, 8 KiB a header) stay far below; a larger head is an attack or a bug.
MAX_HEAD_BYTES = 32 * 1024
_HEAD_END = b"\r\n\r\n"
_HEAD_READ_BYTES = 16 * 1024
# Large enough that a 10 MiB body costs ten reads, small enough to keep one loop turn short.
_BODY_READ_BYTES = 1024 * 1024
# Deadlines are checked at most this often: a scan per poller wake-up would cost O(connections) each.
_SWEEP_INTERVAL_S = 0.25
# As gunicorn's close_graceful: how long a closed connection may take to read what the client still sent.
_LINGER_S = 2.0
_LINGER_READ_BYTES = 64 * 1024
# How long a thread that just answered waits for the next request on the same connection. Long enough
# for a client that sends requests back to back, short enough that a thread held for nothing costs little.
_HOT_WAIT_S = 0.002
# Descriptors besides client connections: listeners, the upstream pools, databases, spool, chDB.
_SPARE_DESCRIPTORS = 512
_TIMEOUT_REPLY = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
_TOO_LARGE_REPLY = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
)


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """How long and how much Warden waits for a client, from `server.*` settings."""

    header_timeout_s: float = 10.0
    client_timeout_s: float = 60.0
    max_body_bytes: int = 10 * 1024 * 1024


def body_to_buffer(head: bytes, max_body_bytes: int) -> int | None:
    """How many body bytes follow `head` for the event loop to wait for; None when the thread should
    read the body itself (chunked, `Expect`, a length over the limit or one gunicorn will refuse).

    This only decides how long to buffer: gunicorn parses the same bytes again in the thread, so a
    head read differently here is still answered (or refused) there, never trusted from here.
    """
    length = 0
    seen = False
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        name = name.strip().lower()
        if name in (b"transfer-encoding", b"expect"):
            return None
        if name == b"content-length":
            value = value.strip()
            # Twice, signed, or absurdly long: gunicorn answers 400 (or Flask 413) from the head alone.
            if seen or not value.isdigit() or len(value) > 15:
                return None
            seen, length = True, int(value)
    return length if length <= max_body_bytes else None


Reading = Literal["in", "more", "too_large", "thread"]


@dataclass(slots=True, eq=False)
class Arrival:
    """A request arriving on a parked connection."""

    deadline: float
    data: bytearray = field(default_factory=bytearray)
    scanned: int = 0  # where the search for the head's end resumes
    needed: int | None = None  # head and body bytes, once the head is in


class _Connection(TConn):
    """gthread's connection, with a socket timeout in the thread and a lingering close left to the loop."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any, worker: WardenWorker) -> None:
        super().__init__(cfg, sock, client, server)
        self.worker = worker
        # Set once its request has arrived: the next enqueue goes to a thread, not back to the poller.
        self.complete = False

    def init(self) -> None:
        super().init()
        # gthread makes the socket blocking (no timeout) before each request it serves.
        self.sock.settimeout(self.worker.limits.client_timeout_s)

    def close(self, graceful: bool = False) -> None:
        if graceful:
            self.worker.linger(self)
        else:
            super().close()


class WardenWorker(ThreadWorker):
    """gthread whose event loop reads each request before a thread takes it (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # WardenServer gives its limits; another gunicorn application gets the defaults.
        self.limits: ClientLimits = getattr(self.app, "client_limits", ClientLimits())
        self.body_budget = self.cfg.threads * self.limits.max_body_bytes
        self.buffered = 0
        self.arrivals: dict[_Connection, Arrival] = {}
        self.lingering: dict[_Connection, float] = {}
        self.next_sweep = 0.0
        self.last_heartbeat = 0.0

    def notify(self) -> None:
        """gunicorn touches the heartbeat file on every turn of the loop, a syscall per request; the
        master only looks for a silence longer than `timeout` (120 s)."""
        now = time.monotonic()
        if now - self.last_heartbeat >= 1.0:
            self.last_heartbeat = now
            super().notify()

    def handle(self, conn: _Connection) -> Any:
        keepalive = super().handle(conn)
        # Serve the client's next request in this thread if it arrives at once (see the module).
        while keepalive is True and self.alive and self.next_arrived(conn):
            keepalive = super().handle(conn)
        return keepalive

    def next_arrived(self, conn: _Connection) -> bool:
        """Whether a whole request is now in `conn`'s parser; otherwise what was read stays there for the
        loop (`finish_request` parks a connection that holds bytes)."""
        if self.tpool._work_queue.qsize():
            # Requests queued for a thread come first. Looking would cost a poll that rarely finds
            # anything: this client is only now reading its answer (a pipelined request is already in
            # the parser's buffer, and the loop serves it).
            return False
        unreader = conn.parser.unreader
        arrival = Arrival(deadline=0.0, data=bytearray(unreader.take_buffered()))
        wait = _HOT_WAIT_S
        state: Reading | None = None
        try:
            while (state := self.reading(arrival)) == "more":
                if not _readable(conn.sock, wait):
                    break
                wait = 0.0
                chunk = conn.sock.recv(_HEAD_READ_BYTES if arrival.needed is None else _BODY_READ_BYTES)
                if not chunk:
                    break
                arrival.data += chunk
        except OSError:
            state = None
        unreader.unread(bytes(arrival.data))
        return state == "in"

    def reading(self, arrival: Arrival) -> Reading:
        """Where an arriving request stands: "in" (head and body), "more" (they may still come),
        "too_large" (a head past MAX_HEAD_BYTES) or "thread" (a body the thread reads itself)."""
        if arrival.needed is None:
            end = head_end(arrival)
            if end < 0:
                return "more" if len(arrival.data) <= MAX_HEAD_BYTES else "too_large"
            if end > MAX_HEAD_BYTES:
                return "too_large"
            body = body_to_buffer(bytes(arrival.data[:end]), self.limits.max_body_bytes)
            if body is None:
                return "thread"
            arrival.needed = end + body
        return "in" if len(arrival.data) >= arrival.needed else "more"

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        super().check_config(cfg, log)
        unsupported = {
            "TLS (certfile)": cfg.is_ssl,
            "http2_cleartext": cfg.http2_cleartext != "off",
            "proxy_protocol": cfg.proxy_protocol != "off",
            "protocol": cfg.protocol != "http",
        }
        if on := [name for name, enabled in unsupported.items() if enabled]:
            raise RuntimeError(f"WardenWorker reads plain HTTP/1.x only; turn off {', '.join(on)}")

    def init_process(self) -> None:
        _raise_descriptor_limit(self.cfg.worker_connections + _SPARE_DESCRIPTORS, self.log)
        # gthread builds each response with `wsgi.create`, which takes the module's class: this
        # process serves only through this worker, so replacing it here changes nothing else.
        wsgi.Response = LeanResponse
        super().init_process()

    def accept(self, listener: socket.socket) -> None:
        try:
            sock, client = listener.accept()
        except (BlockingIOError, ConnectionAbortedError, InterruptedError):
            return
        self.nr_conns += 1
        self.enqueue_req(_Connection(self.cfg, sock, client, listener.getsockname(), self))

    def enqueue_req(self, conn: _Connection) -> None:
        # gthread enqueues a new connection, a kept-alive one that turned readable, and one whose
        # thread read past its request (pipelining): each waits here for a whole request first.
        if conn.complete:
            conn.complete = False
            super().enqueue_req(conn)
        else:
            self.park(conn)

    def park(self, conn: _Connection) -> None:
        arrival = Arrival(deadline=time.monotonic() + self.limits.header_timeout_s)
        self.arrivals[conn] = arrival
        conn.sock.setblocking(False)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_arrival, conn))
        if conn.parser is not None and (ahead := conn.parser.unreader.take_buffered()):
            arrival.data += ahead
            self.buffered += len(ahead)
            self.inspect(conn, arrival)

    def on_arrival(self, conn: _Connection, _sock: socket.socket) -> None:
        arrival = self.arrivals[conn]
        if arrival.needed is None:
            size = _HEAD_READ_BYTES
        else:
            size = min(_BODY_READ_BYTES, arrival.needed - len(arrival.data))
            if self.buffered + size > self.body_budget:
                self.hand_off(conn)  # the thread reads the rest, under client_timeout_s
                return
        try:
            chunk = conn.sock.recv(size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.drop(conn)
            return
        arrival.data += chunk
        self.buffered += len(chunk)
        self.inspect(conn, arrival)

    def inspect(self, conn: _Connection, arrival: Arrival) -> None:
        """Hand the connection to a thread if its request is in, or drop a head grown too large."""
        state = self.reading(arrival)
        if state == "too_large":
            self.drop(conn, _TOO_LARGE_REPLY)
        elif state != "more":
            self.hand_off(conn)
        elif arrival.needed is not None:
            # A body may take long over a slow link; it must not stop.
            arrival.deadline = time.monotonic() + self.limits.client_timeout_s

    def hand_off(self, conn: _Connection) -> None:
        arrival = self.arrivals.pop(conn)
        self.buffered -= len(arrival.data)
        self.poller.unregister(conn.sock)
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(arrival.data))
        conn.data_ready = True  # gthread's own wait for a first byte is over
        conn.complete = True
        self.enqueue_req(conn)

    def drop(self, conn: _Connection, reply: bytes = b"") -> None:
        arrival = self.arrivals.pop(conn)
        self.buffered -= len(arrival.data)
        self.poller.unregister(conn.sock)
        if reply and arrival.data:
            # A courtesy only: the client may be gone, or not reading.
            with contextlib.suppress(OSError):
                conn.sock.send(reply)
        self.nr_conns -= 1
        conn.close()

    def linger(self, conn: _Connection) -> None:
        """Close after a response: send FIN now, read what the client still sends, close at its EOF."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_lingering, conn))
        except (OSError, ValueError):
            util.close(conn.sock)
            return
        self.lingering[conn] = time.monotonic() + _LINGER_S

    def on_lingering(self, conn: _Connection, _sock: socket.socket) -> None:
        try:
            if conn.sock.recv(_LINGER_READ_BYTES):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self.end_linger(conn)

    def end_linger(self, conn: _Connection) -> None:
        del self.lingering[conn]
        self.poller.unregister(conn.sock)
        util.close(conn.sock)

    def murder_pending(self) -> None:
        # Called by gthread's loop on every turn, while serving and while stopping.
        super().murder_pending()
        now = time.monotonic()
        if now < self.next_sweep:
            return
        self.next_sweep = now + _SWEEP_INTERVAL_S
        for conn in [c for c, arrival in self.arrivals.items() if arrival.deadline <= now]:
            self.drop(conn, _TIMEOUT_REPLY)
        for conn in [c for c, deadline in self.lingering.items() if deadline <= now]:
            self.end_linger(conn)


class LeanResponse(wsgi.Response):
    """gunicorn's response, writing the head together with the first body bytes, in one `sendall`, and
    formatting the Date header once a second.

    gunicorn sends the head, then each body chunk: two writes for every JSON answer, and two segments
    for the client to wait for. Its Date comes from `email.utils.formatdate` on every response. Together
    about 4% of a worker's CPU per proxied request (issue 16).
    """

    headers_sent: bool
    _head = b""
    _coalescing = False

    def default_headers(self) -> list[str]:
        if self.upgrade:
            connection = "upgrade"
        elif self.should_close():
            connection = "close"
        else:
            connection = "keep-alive"
        version = self.req.version
        headers = [
            f"HTTP/{version[0]}.{version[1]} {self.status}\r\n",
            f"Server: {self.version}\r\n",
            f"Date: {http_date()}\r\n",
            f"Connection: {connection}\r\n",
        ]
        if self.chunked:
            headers.append("Transfer-Encoding: chunked\r\n")
        return headers

    def send_headers(self) -> None:
        if self.headers_sent:
            return
        lines = self.default_headers()
        lines.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        self.headers_sent = True
        if self._coalescing:
            self._head = head
        else:
            util.write(self.sock, head)

    def write(self, arg: bytes) -> None:
        # Only where gunicorn's write surely reaches `_emit_body` with these bytes; else as gunicorn does.
        self._coalescing = (
            not self.headers_sent
            and bool(arg)
            and not self._omits_body
            and (self.response_length is None or self.response_length > 0)
        )
        try:
            super().write(arg)
        finally:
            self._coalescing = False
            if self._head:  # not reached `_emit_body`: the head still goes out, alone
                head, self._head = self._head, b""
                util.write(self.sock, head)

    def _emit_body(self, data: bytes) -> None:
        if not self._head:
            super()._emit_body(data)
            return
        head, self._head = self._head, b""
        if self.chunked:
            data = b"%X\r\n%s\r\n" % (len(data), data)
        self.sock.sendall(head + data)


_date: tuple[int, str] = (0, "")


def http_date() -> str:
    """The current time as an HTTP Date header value, formatted at most once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, formatdate(now, usegmt=True))
    return _date[1]


def _readable(sock: socket.socket, timeout: float) -> bool:
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def head_end(arrival: Arrival) -> int:
    """Where the body starts, or -1 while the head is incomplete; scans each byte about once."""
    data = arrival.data
    # RFC 9112 §2.2: one empty line before the request line is ignored (and so is gunicorn).
    start = 2 if data.startswith(b"\r\n") else 0
    at = data.find(_HEAD_END, max(start, arrival.scanned - len(_HEAD_END) + 1))
    arrival.scanned = len(data)
    return -1 if at < 0 else at + len(_HEAD_END)


def _raise_descriptor_limit(wanted: int, log: Any) -> None:
    """Raise this process's soft limit on open files towards `wanted` (services often start at 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning(
            "open files limited to %d; server.max_connections needs about %d (raise `ulimit -n`)",
            target,
            wanted,
        )
