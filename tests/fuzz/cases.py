"""Requests to fuzz Warden with, drawn from a seeded `random.Random`: every rule of the app's URL map,
every method, hostile path values, queries, headers and bodies shaped like each route's own (so that
a mutation of a valid request reaches the code past validation), and raw framing cases.
"""

from __future__ import annotations

import json
import random
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from proxy.identity.sessions import COOKIE, LOGIN_CSRF_COOKIE
from tests.fuzz import values
from tests.fuzz.bodies import BASES, MODELS, mutate
from tests.fuzz.wire import Request

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
ODD_METHODS = ("TRACE", "PROPFIND", "get", "POSTT", "M-SEARCH", "X" * 300)
HOSTILE_TARGETS = (
    b"/v1/../api/me",
    b"//api/teams",
    b"/v1/%2e%2e/api/me",
    b"/v1/models/..%2f..%2fapi%2fme",
    b"/%2e%2e/%2e%2e/etc/passwd",
    b"/dashboards/../../app.py",
    b"/dashboards/..%2f..%2fapp.py",
    b"/static/../app.py",
    b"/API/ME",
    b"/api/me/",
    b"/v1//chat/completions",
    b"/v1/chat/completions/",
    b"/v1/chat/completions?stream=true",
    b"/healthz/../api/users",
    b"/transcripts/%00",
    b"/v1/messages/%0d%0aSet-Cookie:%20a=b",
    b"/login?next=//evil.example",
    b"/login?next=%2F%2Fevil.example",
    b"/login?next=/\\evil.example",
    b"http://127.0.0.1/api/me",
    b"http://evil.example/v1/models",
    b"*",
    b"/\xff\xfe",
    b"/v1/models/\xc0\xaf",
    b"/" + b"a" * 8000,
    b"/v1/" + b"%41" * 3000,
)
QUERY_KEYS = (
    "range", "since", "until", "team", "project", "model", "key", "baseline_since", "baseline_until",
    "limit", "before", "next", "stream", "api-version", "x",
)  # fmt: skip
QUERY_VALUES = (
    "1h", "24h", "7d", "30d", "90d", "400d", "2026-11-10T00:00:00Z", "2026-11-20T00:00:00Z", "alpha",
    "alpha,beta", "-1", "0", "1000", "1001", "99999999999999999999999", "1e3", "9" * 5000,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Credentials:
    api_key: str
    session_cookie: str
    csrf_token: str
    admin_token: str
    login_csrf: str  # the sign-in form's CSRF cookie (and token), so a fuzzed sign-in gets past it


@dataclass(frozen=True, slots=True)
class Case:
    kind: str  # what was fuzzed, for the summary and for failure messages
    request: Request
    rule: str  # the URL rule it aimed at ("" for raw targets)
    # The HTTP framing is broken on purpose: the server in front of Warden may refuse it itself.
    framing: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    rule: str
    methods: frozenset[str]
    arguments: tuple[str, ...]


def _takes_body(route: Route) -> bool:
    return any((method, route.rule) in BASES for method in route.methods)


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


class CaseMaker:
    def __init__(self, rng: random.Random, routes: list[Route], creds: Credentials, max_body: int) -> None:
        self.rng = rng
        self.routes = routes
        self.creds = creds
        self.max_body = max_body

    # -- one case ------------------------------------------------------------------------------

    def make(self, route: Route | None = None, method: str | None = None) -> Case:
        """A case for `route` and `method`, or for ones drawn at random (raw framing cases included)."""
        if route is None:
            roll = self.rng.random()
            if roll < 0.03:
                return self.framing()
            if roll < 0.06:
                return self.hostile_target()
            # Routes that take a body are drawn three times as often: there is more to reach behind them.
            route = self.rng.choices(self.routes, [3 if _takes_body(r) else 1 for r in self.routes])[0]
        if method is None:
            roll = self.rng.random()
            if roll < 0.8 and route.methods:
                method = self.rng.choice(sorted(route.methods))
            else:
                method = self.rng.choice(METHODS if roll < 0.98 else ODD_METHODS)
        path = self.fill(route)
        query = self.query()
        kind, body, content_type = self.body(route, method)
        headers = self.headers(route, method, content_type)
        # Raw bytes above 0x7F are not HTTP (RFC 9112 wants them percent-encoded), and the server in
        # front may refuse them itself: http.server splits the request line on \x85 and \xa0.
        raw = any(b > 0x7E for b in path + query)
        return Case(
            kind,
            Request(method.encode(), path + query, tuple(headers), body),
            route.rule,
            framing=raw or method in ODD_METHODS,
        )

    # -- paths and queries ---------------------------------------------------------------------

    def fill(self, route: Route) -> bytes:
        path = route.rule
        for name in route.arguments:
            path = path.replace(f"<{name}>", "\x01" + name + "\x01").replace(
                f"<path:{name}>", "\x01" + name + "\x01"
            )
        out = b""
        for index, piece in enumerate(path.split("\x01")):
            out += _enc(piece) if index % 2 == 0 else self.path_value(piece)
        return out

    def path_value(self, name: str) -> bytes:
        rng = self.rng
        if rng.random() < 0.35:
            plain = {
                "request_id": "00000000-0000-4000-8000-000000000000",
                "model_id": rng.choice(MODELS),
                "key_id": "key_missing",
                "username": "nobody-here",
                "export_id": "exp_0123456789abcdef",
                "name": "requests.jsonl",
                "path": rng.choice(("files", "assistants", "chat/completions/extra", "messages/batches")),
            }
            return _enc(plain.get(name, "x"))
        text = values.text(rng)[:3000] or "x"
        mode = rng.random()
        if mode < 0.5:
            return urllib.parse.quote(text, safe="", errors="surrogatepass").encode()
        if mode < 0.8:
            return urllib.parse.quote(text, safe="/%.", errors="surrogatepass").encode()
        # Raw bytes: anything but what ends the request line.
        raw = _enc(text)
        if rng.random() < 0.3:
            raw += bytes((0xFF, 0xFE, 0xC0, 0xAF))
        return bytes(b for b in raw if b > 0x20 and b != 0x7F) or b"x"

    def query(self) -> bytes:
        rng = self.rng
        if rng.random() < 0.5:
            return b""
        pairs = []
        for _ in range(rng.randrange(1, 6)):
            key = rng.choice(QUERY_KEYS)
            value = rng.choice(QUERY_VALUES) if rng.random() < 0.5 else values.text(rng)[:500]
            pairs.append((key, value))
        encoded = urllib.parse.urlencode(pairs, errors="surrogatepass").encode()
        if rng.random() < 0.1:
            encoded += b"&%ff%fe=%c0%af&&=&a"
        return b"?" + encoded

    # -- headers -------------------------------------------------------------------------------

    def headers(self, route: Route, method: str, content_type: bytes | None) -> list[tuple[bytes, bytes]]:
        rng, creds = self.rng, self.creds
        headers: list[tuple[bytes, bytes]] = []
        if content_type is not None:
            headers.append((b"Content-Type", content_type))
        api = route.rule.startswith(
            ("/v1", "/chat", "/completions", "/embeddings", "/responses", "/messages")
        )
        api = api or route.rule.startswith("/models")
        roll = rng.random()
        key = creds.api_key.encode()
        if api and not route.rule.startswith("/v1/warden") and roll < 0.7:
            headers.append(
                rng.choice(
                    (
                        (b"Authorization", b"Bearer " + key),
                        (b"Authorization", b"bearer   " + key + b"  "),
                        (b"x-api-key", key),
                        (b"api-key", key),
                    )
                )
            )
        elif route.rule == "/login" and roll < 0.45:
            headers.append((b"Cookie", LOGIN_CSRF_COOKIE.encode() + b"=" + creds.login_csrf.encode()))
        elif roll < 0.45 and route.rule != "/logout":  # a sign-out would end the session for the rest
            headers.append((b"Cookie", COOKIE.encode() + b"=" + creds.session_cookie.encode()))
            if method not in ("GET", "HEAD", "OPTIONS") or rng.random() < 0.2:
                token = creds.csrf_token.encode() if rng.random() < 0.85 else _enc(values.text(rng)[:200])
                headers.append((b"X-CSRF-Token", token))
        elif roll < 0.75:
            headers.append((b"Authorization", b"Bearer " + creds.admin_token.encode()))
        elif roll < 0.9:
            headers += self.bogus_auth()
        if rng.random() < 0.15:
            headers.append((b"anthropic-version", rng.choice((b"2023-06-01", b"", b"\xff", b"9999-99-99"))))
        if rng.random() < 0.1:
            beta = rng.choice((b"tools-2024-04-04", b"\xe9t\xe9", b"a" * 5000, b"x,y,,", b"\x01"))
            headers.append((b"anthropic-beta", beta))
        if rng.random() < 0.1:
            headers += self.odd_headers()
        return headers

    def bogus_auth(self) -> list[tuple[bytes, bytes]]:
        rng, key = self.rng, self.creds.api_key.encode()
        return rng.choice(
            (
                [(b"Authorization", b"Bearer wdn-" + b"0" * 64)],
                [(b"Authorization", b"Bearer " + b"A" * 8000)],
                [(b"Authorization", b"Basic Zm9vOmJhcg==")],
                [(b"Authorization", b"Bearer")],
                [(b"Authorization", b"Bearer \xff\xfe")],
                [(b"Authorization", b"Bearer " + key), (b"Authorization", b"Bearer wdn-bogus")],
                [(b"Authorization", b"Bearer wdn-bogus"), (b"x-api-key", key)],
                [(b"x-api-key", b"sk-ant-" + b"x" * 40)],
                [(b"x-api-key", key + b"\x00")],
                [(b"Cookie", b"warden_session=" + b"A" * 4000)],
                [(b"Cookie", b"warden_session=\xff; warden_session=x; =;;")],
                [(b"Authorization", b"Bearer " + self.creds.admin_token.encode() + b"x")],
            )
        )

    def odd_headers(self) -> list[tuple[bytes, bytes]]:
        rng = self.rng
        return rng.choice(
            (
                [(b"X-Forwarded-For", b"'; DROP TABLE audit_log; --, 10.0.0.1")],
                [(b"X-Forwarded-Proto", b"https\x00")],
                [(b"X-Fuzz", b"a" * 60_000)],
                [(b"Accept", b"text/event-stream")],
                [(b"Accept-Encoding", b"gzip, br, zstd, \xff")],
                [(b"Expect", b"100-continue")],
                [(b"Transfer-Encoding", b"gzip")],
                [(b"Content-Encoding", b"gzip")],
                [(b"Host", b"evil.example")],
                [(b"X-Request-Id", b"\xe9\xff" * 10)],
                [(b"X-CSRF-Token", b"\r")],
                [(b"Range", b"bytes=0-1")],
                [(b"If-None-Match", b"*")],
            )
        )

    # -- bodies --------------------------------------------------------------------------------

    def body(self, route: Route, method: str) -> tuple[str, bytes, bytes | None]:
        """(kind, body, content type) for a request to `route`."""
        rng = self.rng
        roll = rng.random()
        base = BASES.get((method, route.rule)) or BASES.get(("POST", route.rule))
        if roll < 0.06:
            return "broken-json", values.broken_json(rng), b"application/json"
        if roll < 0.08:
            return "oversized", values.oversized(rng, self.max_body), b"application/json"
        if roll < 0.12:
            return "form", self.form(route), b"application/x-www-form-urlencoded"
        if roll < 0.14:
            return "multipart", self.multipart(), b"multipart/form-data; boundary=fuzz"
        if roll < 0.17:
            return "random-json", values.dumps(rng, values.value(rng)), self.json_type()
        if base is None:
            if method in ("GET", "HEAD", "OPTIONS") and rng.random() < 0.7:
                return "no-body", b"", None
            return "random-json", values.dumps(rng, values.value(rng)), self.json_type()
        document = base(rng)
        mutations = 0 if rng.random() < 0.25 else rng.randrange(1, 4)
        for _ in range(mutations):
            document = mutate(rng, document)
        return ("valid" if mutations == 0 else "mutated"), values.dumps(rng, document), self.json_type()

    def json_type(self) -> bytes | None:
        return self.rng.choice(
            (
                b"application/json",
                b"application/json",
                b"application/json",
                b"application/json; charset=utf-16",
                b"text/plain",
                b"application/x-www-form-urlencoded",
                None,
            )
        )

    def form(self, route: Route) -> bytes:
        rng, creds = self.rng, self.creds
        fields = [
            ("username", rng.choice(("admin", "fuzz-admin", values.text(rng)[:300]))),
            ("password", rng.choice(("wrong-password!!", values.text(rng)[:300]))),
            ("csrf_token", rng.choice((creds.login_csrf, creds.csrf_token, values.text(rng)[:100]))),
            ("next", values.text(rng)[:300]),
            ("reason", values.text(rng)[:600]),
        ]
        rng.shuffle(fields)
        encoded = urllib.parse.urlencode(fields[: rng.randrange(0, 6)], errors="surrogatepass").encode()
        return encoded + (b"&%ff=%fe" if rng.random() < 0.2 else b"")

    def multipart(self) -> bytes:
        return self.rng.choice(
            (
                b'--fuzz\r\nContent-Disposition: form-data; name="username"\r\n\r\nadmin\r\n--fuzz--\r\n',
                b'--fuzz\r\nContent-Disposition: form-data; name="f"; filename="../../x"\r\n\r\n'
                + b"\x00" * 1000
                + b"\r\n--fuzz--\r\n",
                b"--fuzz\r\nContent-Disposition: form-data\r\n\r\nno name, no end",
                b"--other\r\n\r\n--other--",
                b"--fuzz\r\n" + b"X-H: v\r\n" * 2000 + b"\r\n\r\n--fuzz--\r\n",
            )
        )

    # -- raw targets and broken framing --------------------------------------------------------

    def hostile_target(self) -> Case:
        rng, creds = self.rng, self.creds
        method = rng.choice(("GET", "POST", "OPTIONS", "DELETE"))
        auth = rng.choice(
            (
                [],
                [(b"Authorization", b"Bearer " + creds.admin_token.encode())],
                [(b"Authorization", b"Bearer " + creds.api_key.encode())],
            )
        )
        body = b"{}" if method == "POST" else b""
        request = Request(method.encode(), rng.choice(HOSTILE_TARGETS), tuple(auth), body)
        return Case("hostile-target", request, "")

    def framing(self) -> Case:
        rng, creds = self.rng, self.creds
        key = b"Bearer " + creds.api_key.encode()
        chat = json.dumps({"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}).encode()
        path = rng.choice((b"/v1/chat/completions", b"/api/teams", b"/v1/messages", b"/login"))
        auth = (b"Authorization", key if path.startswith(b"/v1") else b"Bearer " + creds.admin_token.encode())
        host = (b"Host", b"127.0.0.1")
        close = (b"Connection", b"close")
        ctype = (b"Content-Type", b"application/json")
        made: Callable[[], Request] = rng.choice(
            (
                # Content-Length that lies, both ways, or is not a number.
                lambda: Request(b"POST", path, (auth, ctype), chat, content_length=b"100000"),
                lambda: Request(b"POST", path, (auth, ctype), chat, content_length=b"10"),
                lambda: Request(b"POST", path, (auth, ctype), chat, content_length=b"-5"),
                lambda: Request(b"POST", path, (auth, ctype), chat, content_length=b"abc"),
                lambda: Request(b"POST", path, (auth, ctype), chat, content_length=b"1e3"),
                lambda: Request(b"POST", path, (auth, ctype, (b"Content-Length", b"3")), chat),
                lambda: Request(b"POST", path, (auth, ctype), chat, content_length=b"99999999999999999999"),
                # Chunked bodies, well and badly framed.
                lambda: Request(
                    b"POST",
                    path,
                    (host, close, auth, ctype, (b"Transfer-Encoding", b"chunked")),
                    b"%x\r\n%s\r\n0\r\n\r\n" % (len(chat), chat),
                    verbatim=True,
                ),
                lambda: Request(
                    b"POST",
                    path,
                    (host, close, auth, ctype, (b"Transfer-Encoding", b"chunked")),
                    b"zz\r\n" + chat + b"\r\n0\r\n\r\n",
                    verbatim=True,
                ),
                lambda: Request(
                    b"POST",
                    path,
                    (host, close, auth, ctype, (b"Transfer-Encoding", b"chunked")),
                    b"ffff\r\n" + chat,
                    verbatim=True,
                ),
                lambda: Request(
                    b"POST",
                    path,
                    (host, close, auth, ctype, (b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"5")),
                    b"5\r\nhello\r\n0\r\n\r\n",
                    verbatim=True,
                ),
                # Header injection and header abuse.
                lambda: Request(b"GET", b"/healthz", ((b"X-A", b"a\r\nX-Injected: 1"),)),
                lambda: Request(b"GET", b"/api/me", ((b"Authorization", b"Bearer x\nCookie: y=z"),)),
                lambda: Request(b"GET", b"/v1/models", ((b"Authorization", key + b"\r"),)),
                lambda: Request(b"GET", b"/v1/models", ((b"Authorization\x00", key),)),
                lambda: Request(b"GET", b"/v1/models", ((b"Bad Header Name", b"v"),)),
                lambda: Request(b"GET", b"/v1/models", ((b"", b"no name"),)),
                lambda: Request(b"GET", b"/v1/models", (auth, (b" Authorization", key))),
                lambda: Request(b"GET", b"/", ((b"X-Long", b"a" * 70_000),)),
                lambda: Request(b"GET", b"/", tuple((b"X-H%d" % i, b"v") for i in range(150))),
                lambda: Request(b"GET", b"/v1/models", (auth, (b"X-Folded", b"a\r\n b"))),
                lambda: Request(b"GET", b"/" + b"a" * 70_000),
                lambda: Request(b"GET", b"/v1/models\x00", (auth,)),
                lambda: Request(b"GET\x00", b"/healthz"),
            )
        )
        return Case("framing", made(), "", framing=True)
