"""Reading an upstream's HTTP/1.1 answer off a socket: status line, headers and body framing.

`http.client.HTTPResponse` parses headers with the `email` package and reads through a buffered file
it makes per answer: about 40 µs of a worker's CPU per proxied request on loopback (issue 16), for
headers a relay uses as a dict. This reads the head with one scan for the blank line and splits it in
place. What it keeps from http.client: interim (1xx) answers skipped, headers folded over lines joined,
at most `MAX_HEADERS` headers in `MAX_HEAD_BYTES`, no body after HEAD, 204 or 304, chunked bodies
(extensions and trailers dropped), `Content-Length` bodies and bodies delimited by the close, and
`will_close` when the server will not keep the connection (HTTP/1.0, `Connection: close`, a
close-delimited body, bytes past the answer).
"""

from __future__ import annotations

import socket

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
READ_SIZE = 65536  # bytes asked of the socket per read
_LINE_END = b"\r\n"
_HEAD_END = b"\r\n\r\n"
_CHUNK_LINE_MAX = 1024


class ClosedEarly(ConnectionError):
    """The server closed the connection before sending anything (a kept-alive connection gone stale)."""


class Incomplete(ConnectionError):
    """The connection ended inside the answer."""


class Malformed(Exception):
    """Bytes that are not an HTTP/1.x answer, or one past the limits."""


class Answer:
    """One answer on `sock`: `begin()` reads the head; then `read()` the whole body, or `read1()` pieces."""

    __slots__ = (
        "_buffer",
        "_chunk_left",
        "_chunked",
        "_remaining",
        "_sock",
        "done",
        "headers",
        "status",
        "will_close",
    )

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.will_close = False
        self.done = False
        self._chunked = False
        self._chunk_left = 0
        self._remaining: int | None = 0  # None: until the server closes

    def begin(self, method: str) -> None:
        while True:
            head = self._head()
            version, status = _status_line(head[0])
            if not (100 <= status < 200) or status == 101:
                break
        self.status = status
        self.headers = _headers(head[1:])
        connection = ""
        length: str | None = None
        coding = ""
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == "connection":
                connection += "," + value.lower()
            elif lowered == "content-length":
                if length is not None and length != value.strip():
                    raise Malformed("two different Content-Length headers")
                length = value.strip()
            elif lowered == "transfer-encoding":
                coding = value.lower()
        tokens = {token.strip() for token in connection.split(",")}
        self.will_close = "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens)
        if method == "HEAD" or status in (204, 304) or status < 200:
            self._remaining = 0
        elif coding.rsplit(",", 1)[-1].strip() == "chunked":
            self._chunked = True
        elif length is not None:
            if not length.isdigit() or len(length) > 18:
                raise Malformed("Content-Length is not a number")
            self._remaining = int(length)
        else:
            self._remaining = None
            self.will_close = True
        self._finish_if_empty()

    def read(self) -> bytes:
        """The rest of the body."""
        pieces = []
        while piece := self.read1(READ_SIZE):
            pieces.append(piece)
        return b"".join(pieces)

    def read1(self, size: int) -> bytes:
        """What of the body has arrived (at least one byte, waiting for it), up to `size`; b"" at its end."""
        if self.done:
            return b""
        if self._chunked:
            return self._read_chunk(size)
        if self._remaining is None:  # until the close
            data = self._take(size) or self._recv()
            if not data:
                self.done = True
            return data
        data = self._take(min(size, self._remaining)) or self._recv(min(size, self._remaining))
        if not data:
            raise Incomplete(f"the body ended {self._remaining} bytes short")
        self._remaining -= len(data)
        self._finish_if_empty()
        return data

    # -- parts ---------------------------------------------------------------------------------

    def _head(self) -> list[bytes]:
        scanned = 0
        while (end := self._buffer.find(_HEAD_END, max(0, scanned - 3))) < 0:
            scanned = len(self._buffer)
            if scanned > MAX_HEAD_BYTES:
                raise Malformed("the answer's head is too large")
            data = self._recv()
            if not data:
                if not self._buffer:
                    raise ClosedEarly("the server closed the connection without an answer")
                raise Incomplete("the connection ended inside the answer's head")
            self._buffer += data
        if end > MAX_HEAD_BYTES:
            raise Malformed("the answer's head is too large")
        head = bytes(self._buffer[:end])
        del self._buffer[: end + len(_HEAD_END)]
        return head.split(_LINE_END)

    def _read_chunk(self, size: int) -> bytes:
        if self._chunk_left == 0:
            line = self._line()
            digits = line.split(b";", 1)[0].strip()
            try:
                self._chunk_left = int(digits, 16)
            except ValueError:
                raise Malformed("a chunk size is not a hex number") from None
            if self._chunk_left < 0 or len(digits) > 16:
                raise Malformed("a chunk size is out of range")
            if self._chunk_left == 0:
                while self._line():  # trailers, up to the blank line
                    pass
                self.done = True
                self.will_close = self.will_close or bool(self._buffer)
                return b""
        data = self._take(min(size, self._chunk_left)) or self._recv(min(size, self._chunk_left))
        if not data:
            raise Incomplete("the connection ended inside a chunk")
        self._chunk_left -= len(data)
        if self._chunk_left == 0 and self._line():
            raise Malformed("a chunk is longer than its size")
        return data

    def _line(self) -> bytes:
        while (end := self._buffer.find(_LINE_END)) < 0:
            if len(self._buffer) > _CHUNK_LINE_MAX:
                raise Malformed("a chunk line is too long")
            data = self._recv()
            if not data:
                raise Incomplete("the connection ended inside a chunked body")
            self._buffer += data
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def _take(self, size: int) -> bytes:
        if not self._buffer:
            return b""
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _recv(self, size: int = READ_SIZE) -> bytes:
        return self._sock.recv(size)

    def _finish_if_empty(self) -> None:
        if self._remaining == 0 and not self._chunked:
            self.done = True
            # Bytes past the answer: the connection's framing can no longer be trusted.
            self.will_close = self.will_close or bool(self._buffer)


def _status_line(line: bytes) -> tuple[str, int]:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[0]) != 8:
        raise Malformed("not an HTTP/1.x status line")
    code = parts[1]
    if len(code) != 3 or not code.isdigit():
        raise Malformed("the status is not three digits")
    status = int(code)
    if status < 100:
        raise Malformed("the status is out of range")
    return parts[0].decode("ascii"), status


def _headers(lines: list[bytes]) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for raw in lines:
        if raw[:1] in (b" ", b"\t"):  # folded onto the line before (obsolete, still met)
            if not headers:
                raise Malformed("a folded line before any header")
            last, joined = headers[-1]
            headers[-1] = (last, f"{joined} {raw.strip().decode('latin-1')}")
            continue
        name, colon, value = raw.partition(b":")
        if not colon or not name or name != name.strip():
            raise Malformed("a header line without a name")
        headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        if len(headers) > MAX_HEADERS:
            raise Malformed(f"more than {MAX_HEADERS} headers")
    return headers
