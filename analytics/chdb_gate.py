"""The password gate in front of a chDB-served ClickHouse HTTP endpoint (`warden clickhouse-serve`).

chDB's embedded server cannot require a password itself: its in-process session always signs in as
`default` with no password from 127.0.0.1, and ClickHouse lets every loopback client in as any user a
loopback client may be. So chDB listens on a private loopback port that answers only requests carrying
a random relay token made at each start (an `http_handlers` rule; everything else gets 403), and this
gate, on the public port, is the only holder of that token. It forwards a request only when:

- it authenticates as user `default` with the password, the way clickhouse-connect and the ClickHouse
  clients send it (HTTP basic auth, `X-ClickHouse-User`/`X-ClickHouse-Key`, or `user`/`password` in the
  query string), compared in constant time; otherwise 401, and nothing runs;
- it does not come from a browser: `Origin` or `Sec-Fetch-*` headers, or a form content type, get 403.
  A page on any site can make a browser post to 127.0.0.1, and a browser that ever signed in to this
  endpoint would add the credentials itself.

The password comes from `WARDEN_CLICKHOUSE_PASSWORD`, or a file (created with a random one, mode 0600,
on first start; refused if others may read it).
"""

from __future__ import annotations

import base64
import hmac
import http.client
import os
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

PASSWORD_ENV = "WARDEN_CLICKHOUSE_PASSWORD"  # noqa: S105 (the variable's name)
USER = "default"
RELAY_HEADER = "X-Warden-Relay"
MIN_PASSWORD = 16
# Hop-by-hop headers (RFC 9110 §7.6.1) and the credentials, which stop here.
_DROPPED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "authorization",
        "x-clickhouse-user",
        "x-clickhouse-key",
        RELAY_HEADER.lower(),
    }
)
_CREDENTIAL_PARAMS = frozenset({"user", "password"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_CHUNK = 64 * 1024

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class PasswordError(RuntimeError):
    """The password cannot be had safely; the message says what to do."""


def load_password(path: Path, environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """The endpoint's password: the environment's, else the file's, else a new one written to the file."""
    given = environ.get(PASSWORD_ENV)
    if given is not None:
        if len(given) < MIN_PASSWORD:
            raise PasswordError(f"{PASSWORD_ENV} must be at least {MIN_PASSWORD} characters")
        return given
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PasswordError(
                f"{path} may be read by others (mode {mode & 0o777:o}); chmod 600 it"
            ) from None
        password = path.read_text(encoding="utf-8").strip()
        if len(password) < MIN_PASSWORD:
            raise PasswordError(
                f"the password in {path} must be at least {MIN_PASSWORD} characters"
            ) from None
        return password
    password = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(password + "\n")
    return password


class Gate:
    """A WSGI app: authenticate, refuse browsers, relay to chDB's private port with the relay token."""

    def __init__(self, password: str, upstream_port: int, relay_token: str) -> None:
        self._expected = f"{USER}:{password}".encode()
        self._port = upstream_port
        self._token = relay_token

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/ping":  # ClickHouse answers it unauthenticated; it runs nothing
            return _answer(start_response, "200 OK", b"Ok.\n")
        if _from_browser(environ):
            return _answer(start_response, "403 Forbidden", b"browser requests are refused\n")
        params = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if not self._authenticated(environ, params):
            return _answer(start_response, "401 Unauthorized", b"authentication required\n")
        return self._relay(environ, params, start_response)

    def _authenticated(self, environ: dict[str, Any], params: list[tuple[str, str]]) -> bool:
        offered = _credentials(environ, params)
        # Always one comparison of the whole "user:password", whatever was sent.
        return hmac.compare_digest((offered or "").encode(), self._expected) and offered is not None

    def _relay(
        self, environ: dict[str, Any], params: list[tuple[str, str]], start_response: StartResponse
    ) -> Iterator[bytes]:
        query = urlencode([(k, v) for k, v in params if k not in _CREDENTIAL_PARAMS])
        target = environ.get("PATH_INFO", "/") + (f"?{query}" if query else "")
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_") and key[5:].replace("_", "-").lower() not in _DROPPED
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        headers[RELAY_HEADER] = self._token
        length = environ.get("CONTENT_LENGTH")
        body: Iterable[bytes] | None = None
        if length and length.isdigit():
            headers["Content-Length"] = length
            body = _read(environ["wsgi.input"], int(length))
        elif environ.get("wsgi.input_terminated"):  # a chunked body: relay it chunked
            body = _read(environ["wsgi.input"], None)
        connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=3600)
        try:
            connection.request(
                environ["REQUEST_METHOD"],
                target,
                body=body,
                headers=headers,
                encode_chunked=body is not None and "Content-Length" not in headers,
            )
            response = connection.getresponse()
        except OSError:
            connection.close()
            return iter(_answer(start_response, "502 Bad Gateway", b"chDB is not answering\n"))
        start_response(
            f"{response.status} {response.reason}",
            [(k, v) for k, v in response.getheaders() if k.lower() not in _DROPPED - {"content-length"}],
        )
        return _stream(response, connection)


def _credentials(environ: dict[str, Any], params: list[tuple[str, str]]) -> str | None:
    """The "user:password" the request offers, or None; a user without a password offers "user:"."""
    header = environ.get("HTTP_AUTHORIZATION", "")
    if header[:6].lower() == "basic ":
        try:
            return base64.b64decode(header[6:].strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
    if "HTTP_X_CLICKHOUSE_USER" in environ or "HTTP_X_CLICKHOUSE_KEY" in environ:
        return f"{environ.get('HTTP_X_CLICKHOUSE_USER', USER)}:{environ.get('HTTP_X_CLICKHOUSE_KEY', '')}"
    given = dict(params)
    if "user" in given or "password" in given:
        return f"{given.get('user', USER)}:{given.get('password', '')}"
    return None


def _from_browser(environ: dict[str, Any]) -> bool:
    if "HTTP_ORIGIN" in environ or any(key.startswith("HTTP_SEC_FETCH_") for key in environ):
        return True
    content_type = str(environ.get("CONTENT_TYPE", "")).strip().lower()
    return content_type.startswith(_FORM_TYPES)


def _answer(start_response: StartResponse, status: str, body: bytes) -> list[bytes]:
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _read(stream: Any, length: int | None) -> Iterator[bytes]:
    left = length
    while left is None or left > 0:
        chunk = stream.read(_CHUNK if left is None else min(_CHUNK, left))
        if not chunk:
            return
        if left is not None:
            left -= len(chunk)
        yield chunk


def _stream(response: http.client.HTTPResponse, connection: http.client.HTTPConnection) -> Iterator[bytes]:
    try:
        while chunk := response.read1(_CHUNK):
            yield chunk
    finally:
        connection.close()
