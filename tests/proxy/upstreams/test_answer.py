"""The upstream answer reader over real sockets: the same status, headers and body as http.client on
every framing, the same connection reuse decisions, and a named error for what is not HTTP."""

from __future__ import annotations

import http.client
import socket
import threading
import time

import pytest

from proxy.upstreams.answer import MAX_HEADERS, Answer, ClosedEarly, Incomplete, Malformed

CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"6;ext=1\r\ndata: \r\n"
    b"A\r\n0123456789\r\n"
    b"0\r\nX-Trailer: t\r\n\r\n"
)
VALID = {
    "length": b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}',
    "continue first": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nhi",
    "chunked": CHUNKED,
    "until close": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it",
    "no content": b"HTTP/1.1 204 No Content\r\nX-Id: 7\r\n\r\n",
    "not modified": b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
    "http/1.0": b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold",
    "http/1.0 kept alive": b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nold",
    "close": b"HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nRetry-After: 2\r\n"
    b"Content-Length: 4\r\n\r\nslow",
    "latin-1 and repeats": b"HTTP/1.1 200 OK\r\nX-Name: caf\xe9\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
    b"Content-Length: 1\r\n\r\nx",
    "no reason": b"HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx",
}


def pair(data: bytes, *, close: bool = True, pace: float = 0.0) -> socket.socket:
    """Our end of a socket whose other end sends `data` (a byte at a time with `pace`), then closes."""
    ours, theirs = socket.socketpair()
    ours.settimeout(5)

    def send() -> None:
        with theirs if close else _Keep(theirs):
            if pace:
                for i in range(len(data)):
                    theirs.sendall(data[i : i + 1])
                    time.sleep(pace)
            else:
                theirs.sendall(data)
            if not close:
                time.sleep(0.5)

    threading.Thread(target=send, daemon=True).start()
    return ours


class _Keep:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def ours(data: bytes, method: str = "POST", pace: float = 0.0) -> tuple[Answer, bytes]:
    with pair(data, pace=pace) as sock:
        answer = Answer(sock)
        answer.begin(method)
        return answer, answer.read()


def theirs(data: bytes, method: str = "POST") -> tuple[http.client.HTTPResponse, bytes]:
    with pair(data) as sock:
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return response, response.read()


@pytest.mark.parametrize("name", list(VALID))
@pytest.mark.parametrize("method", ["POST", "HEAD"])
def test_answers_read_as_http_client_reads_them(name: str, method: str) -> None:
    data = VALID[name]
    if method == "HEAD":  # a server sends no body after a HEAD answer (bytes there are refused below)
        data = data[: data.index(b"\r\n\r\n", data.rindex(b"HTTP/1.")) + 4]
    answer, body = ours(data, method)
    response, expected = theirs(data, method)
    assert (answer.status, answer.headers, body) == (response.status, response.getheaders(), expected)
    assert answer.done
    assert answer.will_close == bool(response.will_close), "the same decision on reusing the connection"


def test_a_chunked_stream_arrives_piece_by_piece_whatever_the_pace() -> None:
    with pair(CHUNKED, pace=0.001) as sock:
        answer = Answer(sock)
        answer.begin("POST")
        pieces = []
        while piece := answer.read1(65536):
            pieces.append(piece)
    assert b"".join(pieces) == b"data: 0123456789" and len(pieces) > 2
    assert answer.done and not answer.will_close


def test_a_kept_alive_answer_is_done_without_waiting_for_the_close() -> None:
    with pair(VALID["length"], close=False) as sock:
        started = time.monotonic()
        answer = Answer(sock)
        answer.begin("POST")
        assert answer.read() == b'{"ok":true}'
        assert time.monotonic() - started < 0.4 and answer.done and not answer.will_close


def test_bytes_past_the_answer_end_the_connections_reuse() -> None:
    answer, body = ours(VALID["length"] + b"HTTP/1.1 200 OK\r\n")
    assert body == b'{"ok":true}' and answer.will_close
    answer, body = ours(VALID["length"], "HEAD")  # a body after a HEAD answer
    assert body == b"" and answer.will_close


def test_a_folded_header_is_one_line() -> None:
    """RFC 9112 §5.2: obsolete line folding is replaced by a space. http.client keeps the line break,
    which a relay of the header would send on."""
    answer, _ = ours(b"HTTP/1.1 200 OK\r\nX-Long: one\r\n  two\r\nContent-Length: 0\r\n\r\n")
    assert answer.headers == [("X-Long", "one two"), ("Content-Length", "0")]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", ClosedEarly),
        (b"HTTP/1.1 200 OK\r\nContent-Le", Incomplete),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", Incomplete),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", Incomplete),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", Malformed),
        (b"HTTP/1.1 2000 OK\r\n\r\n", Malformed),
        (b"HTTP/2 200\r\n\r\n", Malformed),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", Malformed),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx", Malformed),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", Malformed),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", Malformed),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", Malformed),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000 + b"\r\n\r\n", Malformed),
        (b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * (MAX_HEADERS + 1) + b"\r\n", Malformed),
    ],
)
def test_what_is_not_a_whole_http_answer_is_named(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        ours(data)
