"""A raw HTTP/1.1 client: it sends exactly the bytes a case holds (bad UTF-8, CR or LF in a header,
a Content-Length that lies), which httpx and http.client refuse to write, and reads the answer to EOF."""

from __future__ import annotations

import errno
import http.client
import io
import socket
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Request:
    method: bytes
    target: bytes  # the request-target as sent: path and query, any bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    # None: the real length of `body`; otherwise sent as is (a lie, a bad number), or omitted for b"".
    content_length: bytes | None = None
    # The header block is sent as written (no Host, no Content-Length added): framing cases.
    verbatim: bool = False

    def encode(self) -> bytes:
        lines = [self.method + b" " + self.target + b" HTTP/1.1"]
        if not self.verbatim:
            lines.append(b"Host: 127.0.0.1")
            lines.append(b"Connection: close")
        lines += [name + b": " + value for name, value in self.headers]
        if not self.verbatim:
            length = str(len(self.body)).encode() if self.content_length is None else self.content_length
            if length:
                lines.append(b"Content-Length: " + length)
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    seconds: float = 0.0
    raw_head: bytes = field(default=b"", repr=False)

    def header(self, name: str) -> str:
        return self.headers.get(name, "")


class NoAnswer(Exception):
    """The connection ended without a parseable HTTP answer (a reset, a timeout, garbage)."""


class _Recorded:
    """What `http.client.HTTPResponse` needs of a socket, over bytes already read."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self._data)


def exchange(port: int, request: Request, timeout: float) -> bytes:
    """Send `request` on a fresh connection, half-close it (so a short body ends instead of hanging),
    and return every byte the server wrote until it closed. Raises NoAnswer on a timeout or reset."""
    data = request.encode()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and stopped reading: its answer may still be there
        except OSError as exc:
            # The server answered a malformed head and closed before our half-close: the
            # socket is already shut both ways, but what it wrote is still readable.
            if exc.errno != errno.ENOTCONN:
                raise
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            raise NoAnswer(f"no answer within {timeout} s") from None
        except ConnectionResetError:
            if not chunks:
                raise NoAnswer("connection reset before any answer") from None
    return b"".join(chunks)


def parse(raw: bytes, method: bytes) -> Answer:
    if not raw:
        raise NoAnswer("the server closed the connection without answering")
    response = http.client.HTTPResponse(
        _Recorded(raw),  # type: ignore[arg-type]
        method=method.decode("latin-1"),
    )
    try:
        response.begin()
        body = response.read()
    except (http.client.HTTPException, ValueError) as exc:
        raise NoAnswer(f"unparseable answer ({exc!r}): {raw[:200]!r}") from None
    head = raw.split(b"\r\n\r\n", 1)[0]
    return Answer(response.status, response.headers, body, raw_head=head)
