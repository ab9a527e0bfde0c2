"""How the worker's event loop tells a request has arrived (the worker itself: tests/test_slow_clients.py)."""

from __future__ import annotations

import socket
from email.utils import parsedate_to_datetime

from gunicorn.config import Config
from gunicorn.http.parser import RequestParser
from hypothesis import given
from hypothesis import strategies as st

from proxy.worker import Arrival, LeanResponse, body_to_buffer, head_end

HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"


def test_the_body_to_wait_for() -> None:
    assert body_to_buffer(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 100) == 0
    assert body_to_buffer(b"POST / HTTP/1.1\r\ncontent-length:  42 \r\n\r\n", 100) == 42
    assert body_to_buffer(b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 100) is None  # 413 from the head
    # The thread reads these bodies itself (and gunicorn refuses the malformed ones).
    for header in (
        b"Transfer-Encoding: chunked",
        b"Expect: 100-continue",
        b"Content-Length: +5",
        b"Content-Length: 5\r\nContent-Length: 5",
        b"Content-Length: " + b"9" * 40,
    ):
        assert body_to_buffer(b"POST / HTTP/1.1\r\n" + header + b"\r\n\r\n", 100) is None


@given(st.lists(st.integers(min_value=0, max_value=len(HEAD) + 5), max_size=12))
def test_the_head_end_is_found_whatever_the_pieces(cuts: list[int]) -> None:
    data = b"\r\n" + HEAD + b"hello"  # one empty line before the request line is allowed
    arrival = Arrival(deadline=0.0)
    found = -1
    for start, stop in zip([0, *sorted(cuts)], [*sorted(cuts), len(data)], strict=True):
        arrival.data += data[start:stop]
        if (end := head_end(arrival)) >= 0:
            found = end
            break
    assert found == len(b"\r\n" + HEAD)


class _Wire:
    """A socket that records each sendall: what LeanResponse saves is writes, which a real socket hides."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))


def _respond(request: bytes, status: str, headers: list[tuple[str, str]], body: list[bytes]) -> list[bytes]:
    client, server = socket.socketpair()
    with client, server:
        client.sendall(request)
        req = next(RequestParser(Config(), server, ("127.0.0.1", 1)))
        wire = _Wire()
        response = LeanResponse(req, wire, Config())
        response.start_response(status, headers)
        for chunk in body:
            response.write(chunk)
        response.close()
    return wire.writes


def test_a_json_answer_is_one_write_with_a_valid_date() -> None:
    writes = _respond(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", "2")],
        [b"{}"],
    )
    assert len(writes) == 1
    head, _, body = writes[0].partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK" and body == b"{}"
    fields = dict(line.split(": ", 1) for line in lines[1:])
    assert fields["Connection"] == "keep-alive" and fields["Content-Length"] == "2"
    assert parsedate_to_datetime(fields["Date"]).tzinfo is not None


def test_a_stream_is_chunked_with_the_head_in_its_first_write() -> None:
    writes = _respond(
        b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n",
        "200 OK",
        [("Content-Type", "text/plain")],
        [b"ab", b"", b"cde"],
    )
    head, _, first = writes[0].partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert first + b"".join(writes[1:]) == b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"


def test_no_body_and_empty_bodies_still_send_the_head() -> None:
    head_only = _respond(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", "200 OK", [("Content-Length", "2")], [b"{}"])
    assert len(head_only) == 1 and head_only[0].endswith(b"\r\n\r\n")
    empty = _respond(b"GET / HTTP/1.0\r\n\r\n", "204 No Content", [], [b""])
    assert len(empty) == 1 and empty[0].startswith(b"HTTP/1.0 204 No Content\r\n")
    zero = _respond(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "200 OK", [("Content-Length", "0")], [b"x"])
    assert zero == [zero[0]] and zero[0].endswith(b"\r\n\r\n")
