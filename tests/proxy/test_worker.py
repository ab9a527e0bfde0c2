"""How the worker's event loop tells a request has arrived (the worker itself: tests/test_slow_clients.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proxy.worker import Arrival, body_to_buffer, head_end

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
