"""Over ten thousand hostile requests to a live Warden, on every route and method: none may get a 5xx,
an answer in the wrong shape or a traceback in the log, and `/healthz` must answer all along.

The cases come from a seeded generator (`cases.py`): case i is drawn from `Random(f"{SEED}:{i}")`, so
the requests are the same on every run whatever the order the client threads send them in; the first
cases take every rule of the URL map with every method in turn. Run with `-s` for the summary; change
SEED to explore further.
"""

from __future__ import annotations

import logging
import random
import re
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask
from werkzeug.routing import Rule

from analytics.access import Binding
from app import create_app
from proxy.formats import FORMATS
from proxy.identity.directory import Change
from proxy.identity.sessions import COOKIE, LOGIN_CSRF_COOKIE
from proxy.upstreams.fake import FakeUpstream
from tests.fuzz.bodies import MODELS
from tests.fuzz.cases import METHODS, Case, CaseMaker, Credentials, Route
from tests.fuzz.verdicts import problems
from tests.fuzz.wire import NoAnswer, Request, exchange, parse
from tests.support import ADMIN_TOKEN, PASSWORD, LiveWarden, make_settings, sign_in

SEED = 20261120
REQUESTS = 10_200
THREADS = 4  # the server runs in this process: more threads only queue on the GIL
MAX_BODY = 1 << 20  # bodies just under and over the limit stay cheap to send
ANSWER_TIMEOUT = 20.0  # a case without an answer by then is a hang
HEALTH_EVERY = 0.05
# The models of the fake's OpenAI API, of its Anthropic API, and of a chat-only server (`live` below).
UPSTREAM_MODELS = (
    ["gpt-fake", "fake-tools", "text-embed-fake"],
    ["claude-fake", "claude-tools"],
    ["chat-only"],
)
MODEL_RULES = frozenset(f"{prefix}/{f.path}" for f in FORMATS.values() for prefix in ("/v1", ""))
# What the dev server logs when it refuses a request line or header block it cannot parse.
SERVER_REFUSAL = re.compile(r"\] code (400|414|431), message ")
POLICY = """apiVersion: warden/v1
metadata: {name: fuzz, version: '1'}
extends: default
rules:
  output:
    - {id: codename, scanner: terms, action: block, params: {words: [project falcon]}}
    - {id: cards-out, scanner: pii, action: mask, params: {entities: [CREDIT_CARD]}}
"""


@pytest.fixture
def live(tmp_path: Path, fake_upstream: FakeUpstream) -> Iterator[LiveWarden]:
    """Warden with the admin token, output rules, translations both ways, and only the fake's models
    that answer normally: its failure models (fake-500, fake-hang...) would make a 502 expected."""
    policy = tmp_path / "policies" / "fuzz.yaml"
    policy.parent.mkdir()
    policy.write_text(POLICY)
    base = fake_upstream.base_url
    upstreams = [
        {"name": "fake", "type": "openai", "base_url": base},
        {"name": "claude", "type": "anthropic", "base_url": base},
        {"name": "chatonly", "type": "openai", "apis": ["chat.completions"], "base_url": base},
    ]
    for upstream, models in zip(upstreams, UPSTREAM_MODELS, strict=True):
        upstream["models"] = models
    assert {m for models in UPSTREAM_MODELS for m in models} == set(MODELS)
    settings = make_settings(
        tmp_path,
        None,
        upstreams=upstreams,
        auth={"admin_token": ADMIN_TOKEN},
        server={"max_body_bytes": MAX_BODY},
        analytics={"flush_interval_seconds": 0.5},
        policies={"files": [str(policy.parent)]},
    )
    warden = LiveWarden(settings)
    yield warden
    warden.stop()


def routes(app: Flask) -> list[Route]:
    found = []
    for rule in app.url_map.iter_rules():
        assert isinstance(rule, Rule)
        found.append(Route(rule.rule, frozenset(rule.methods or ()), tuple(rule.arguments)))
    return sorted(found, key=lambda route: route.rule)


def credentials(live: LiveWarden) -> Credentials:
    """An API key, a signed-in admin's session and CSRF token, the admin token and a sign-in form's
    CSRF cookie: fuzzed requests get past the gates to the code behind them."""
    live.services.directory.create_user(
        "fuzz-admin", PASSWORD, Change("cli:test", "default"), (Binding("admin"),)
    )
    root = live.base_url.removesuffix("/v1")
    person = sign_in(root, "fuzz-admin")
    form = httpx.Client(base_url=root, timeout=10)
    form.get("/login")
    return Credentials(
        api_key=live.create_key("alpha"),
        session_cookie=person.cookies[COOKIE],
        csrf_token=person.headers["x-csrf-token"],
        admin_token=ADMIN_TOKEN,
        login_csrf=form.cookies[LOGIN_CSRF_COOKIE],
    )


class Failures(logging.Handler):
    """Every log record that carries a traceback or reports an error, from any thread."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "werkzeug" and not record.exc_info and SERVER_REFUSAL.search(record.getMessage()):
            return  # the dev server refusing a request it cannot parse: it never reached Warden
        if record.exc_info or record.levelno >= logging.ERROR or "Traceback" in record.getMessage():
            self.records.append(record)


class HealthProbe(threading.Thread):
    """GET /healthz every HEALTH_EVERY seconds until stopped; every answer's status and latency."""

    def __init__(self, port: int) -> None:
        super().__init__(name="healthz-probe", daemon=True)
        self.port = port
        self.answers: list[tuple[int, float]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        request = Request(b"GET", b"/healthz")
        while not self.stopped.is_set():
            started = time.perf_counter()
            try:
                status = parse(exchange(self.port, request, 5.0), b"GET").status
            except (NoAnswer, OSError):
                status = 0
            self.answers.append((status, time.perf_counter() - started))
            self.stopped.wait(HEALTH_EVERY)


class Campaign:
    """The cases, drawn by index (every rule with every method first), and what their answers were."""

    def __init__(self, port: int, all_routes: list[Route], creds: Credentials) -> None:
        self.port = port
        self.routes = all_routes
        self.creds = creds
        self.sweep = [(route, method) for route in all_routes for method in METHODS]
        self.statuses: Counter[int] = Counter()
        self.kinds: Counter[str] = Counter()
        self.bad: list[str] = []
        self._lock = threading.Lock()
        self._next = iter(range(REQUESTS))

    def case(self, index: int) -> Case:
        maker = CaseMaker(random.Random(f"{SEED}:{index}"), self.routes, self.creds, MAX_BODY)
        return maker.make(*self.sweep[index]) if index < len(self.sweep) else maker.make()

    def work(self) -> None:
        while True:
            with self._lock:
                index = next(self._next, None)
            if index is None:
                return
            case = self.case(index)
            status, found = check(self.port, case)
            with self._lock:
                self.statuses[status] += 1
                self.kinds[case.kind] += 1
                if status == 200 and case.request.method == b"POST" and case.rule in MODEL_RULES:
                    self.kinds["answered-by-a-model"] += 1
                self.bad.extend(f"case {index} {describe(case)}: {problem}" for problem in found)


def test_hostile_requests_never_break_warden(live: LiveWarden, capfd: pytest.CaptureFixture[str]) -> None:
    port = int(live.base_url.rsplit(":", 1)[1].split("/")[0])
    campaign = Campaign(port, routes(live.app), credentials(live))
    failures = Failures()
    root = logging.getLogger()
    root.addHandler(failures)
    # The dev server logs every request at INFO: ten thousand lines nobody reads. Errors still pass.
    werkzeug_log = logging.getLogger("werkzeug")
    werkzeug_level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)
    probe = HealthProbe(port)
    started = time.perf_counter()
    probe.start()
    try:
        threads = [threading.Thread(target=campaign.work, name=f"fuzz-{n}") for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        probe.stopped.set()
        probe.join()
        root.removeHandler(failures)
        werkzeug_log.setLevel(werkzeug_level)
    elapsed = time.perf_counter() - started
    captured = capfd.readouterr()

    sent = sum(campaign.statuses.values())
    health = sorted(seconds for _, seconds in probe.answers)
    p50 = statistics.median(health) * 1000
    p99 = health[min(len(health) - 1, int(len(health) * 0.99))] * 1000
    with capfd.disabled():
        print(
            f"\nfuzz: {sent} requests in {elapsed:.1f} s ({sent / elapsed:.0f}/s, {THREADS} client threads), "
            f"every one of {len(campaign.sweep)} rule x method pairs included\n"
            f"statuses: {dict(sorted(campaign.statuses.items()))}\n"
            f"kinds: {dict(sorted(campaign.kinds.items()))}\n"
            f"/healthz: {len(health)} polls, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"max {health[-1] * 1000:.1f} ms"
        )

    assert sent >= 10_000
    assert not campaign.bad, f"{len(campaign.bad)} bad answers; the first:\n" + "\n".join(campaign.bad[:25])
    assert not failures.records, "errors logged:\n" + "\n".join(
        logging.Formatter().format(record)[:3000] for record in failures.records[:5]
    )
    assert "Traceback" not in captured.err + captured.out, captured.err[-5000:]
    unhealthy = Counter(status for status, _ in probe.answers if status != 200)
    assert not unhealthy, f"/healthz answered {unhealthy} during the run"
    # A probe every HEALTH_EVERY s plus its answer time: far fewer polls would mean it stalled.
    assert len(health) >= elapsed / (HEALTH_EVERY + 1.0)


def check(port: int, case: Case) -> tuple[int, list[str]]:
    """(status, problems) of one case; status 0 when no answer came."""
    try:
        answer = parse(exchange(port, case.request, ANSWER_TIMEOUT), case.request.method)
    except NoAnswer as exc:
        return 0, [f"no answer: {exc}"]
    return answer.status, problems(case, answer)


def describe(case: Case) -> str:
    def cut(value: bytes, limit: int) -> bytes:
        return value if len(value) <= limit else value[:limit] + b"...(%d bytes)" % len(value)

    headers = [(name, cut(value, 80)) for name, value in case.request.headers]
    return (
        f"[{case.kind}] {cut(case.request.method, 20)!r} {cut(case.request.target, 160)!r} "
        f"headers={headers} body={cut(case.request.body, 300)!r}"
    )


def test_the_cases_are_the_same_on_every_run(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, None))
    try:
        all_routes = routes(app)
    finally:
        app.extensions["warden"].close()
    campaign = Campaign(0, all_routes, Credentials("k", "s", "c", "a", "l"))
    first = [campaign.case(i) for i in (*range(40), *range(5000, 5040))]
    again = [campaign.case(i) for i in (*range(40), *range(5000, 5040))]
    assert first == again
    assert len({case.rule for case in first}) > 20
    assert {(case.rule, case.request.method.decode()) for case in first[:40]} == {
        (route.rule, method) for route, method in campaign.sweep[:40]
    }
