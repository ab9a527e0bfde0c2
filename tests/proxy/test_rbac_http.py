"""Access control over HTTP, on a live Warden: every route x every built-in role and anonymous,
sessions and CSRF, escalation attempts, team scoping, and the audit trail of refusals."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from analytics.access import Binding
from proxy.identity import audit
from proxy.identity.directory import Change
from proxy.identity.people import _safe_next
from proxy.upstreams.fake import FakeUpstream
from tests.support import ADMIN_TOKEN, PASSWORD, FakeClock, LiveWarden, login_form, make_settings, sign_in

ROLES = ("viewer", "analyst", "auditor", "admin")

# What each route must declare. Written out here, not read from the code, so that a new route or a
# changed permission fails this test until someone decides what it should be.
EXPECTED = {
    ("GET", "/"): "dashboards:read",
    ("GET", "/login"): "public",
    ("POST", "/login"): "public",
    ("POST", "/logout"): "signed_in",
    ("GET", "/healthz"): "public",
    ("GET", "/metrics"): "public",
    ("POST", "/api/transcripts/<request_id>"): "transcripts:read",
    ("GET", "/transcripts/<request_id>"): "transcripts:read",
    ("POST", "/transcripts/<request_id>"): "transcripts:read",
    ("GET", "/api/me"): "signed_in",
    ("GET", "/api/teams"): "teams:read",
    ("POST", "/api/teams"): "teams:manage",
    ("GET", "/api/users"): "users:read",
    ("POST", "/api/users"): "users:manage",
    ("POST", "/api/users/<username>/disable"): "users:manage",
    ("POST", "/api/users/<username>/enable"): "users:manage",
    ("POST", "/api/users/<username>/roles"): "roles:manage",
    ("DELETE", "/api/users/<username>/roles"): "roles:manage",
    ("GET", "/api/keys"): "keys:read",
    ("POST", "/api/keys"): "keys:manage",
    ("DELETE", "/api/keys/<key_id>"): "keys:manage",
    ("GET", "/api/audit"): "audit:read",
    ("GET", "/api/audit/verify"): "audit:read",
    ("POST", "/api/erasure"): "data:erase",
    ("POST", "/api/exports"): "exports:create",
    ("GET", "/api/exports/<export_id>/<name>"): "exports:create",
    ("GET", "/api/exports/<export_id>"): "exports:create",
    ("GET", "/dashboards/plotly.min.js"): "dashboards:read",
    ("POST", "/v1/warden/evaluate"): "policies:read",
    ("POST", "/v1/warden/feedback"): "feedback:write",  # and an API key of the tenant
    ("GET", "/api/policies"): "policies:read",
    ("GET", "/api/limits"): "limits:read",
    ("PUT", "/api/limits"): "limits:manage",
    ("DELETE", "/api/limits/<rule_id>"): "limits:manage",
    ("GET", "/api/budgets"): "limits:read",
    ("PUT", "/api/budgets"): "limits:manage",
    ("DELETE", "/api/budgets/<rule_id>"): "limits:manage",
    ("GET", "/api/prompts"): "prompts:read",
    ("GET", "/api/prompts/<name>"): "prompts:read",  # and an API key of the tenant
    ("GET", "/api/prompts/<name>/diff"): "prompts:read",
    ("POST", "/api/prompts/<name>/versions"): "prompts:manage",
    ("PUT", "/api/prompts/<name>/labels/<label>"): "prompts:manage",
    ("POST", "/api/prompts/<name>/versions/<int:number>/approve"): "prompts:manage",
    ("GET", "/prompts"): "prompts:read",
    ("GET", "/prompts/<name>"): "prompts:read",
    ("POST", "/prompts/<name>/label"): "prompts:manage",
    ("POST", "/experiments/<name>/promote"): "prompts:manage",
    ("POST", "/experiments/<name>/retire"): "prompts:manage",
    ("GET", "/api/experiments"): "prompts:read",
    ("POST", "/api/experiments"): "prompts:manage",
    ("GET", "/api/experiments/<name>"): "prompts:read",
    ("POST", "/api/experiments/<name>/start"): "prompts:manage",
    ("POST", "/api/experiments/<name>/stop"): "prompts:manage",
    ("POST", "/api/experiments/<name>/promote"): "prompts:manage",
    ("POST", "/api/experiments/<name>/retire"): "prompts:manage",
    **{
        ("GET", f"/dashboards/{page}{suffix}"): "dashboards:read"
        for page in ("overview", "latency", "cost", "drift", "behaviour", "experiments", "audit")
        for suffix in ("", ".json")
    },
    **{
        (method, f"{prefix}{path}"): "api_key"
        for prefix in ("/v1", "")
        for method, path in (
            ("POST", "/chat/completions"),
            ("POST", "/completions"),
            ("POST", "/embeddings"),
            ("POST", "/responses"),
            ("POST", "/messages"),
            ("POST", "/messages/count_tokens"),
            ("GET", "/models"),
            ("GET", "/models/<path:model_id>"),
        )
    },
    **{(method, "/v1/<path:path>"): "api_key" for method in ("GET", "POST", "PUT", "PATCH", "DELETE")},
}
# Which roles hold each permission (tenant-wide bindings), written out independently of the code.
HOLDERS = {
    "dashboards:read": {"viewer", "analyst", "auditor", "admin"},
    "teams:read": {"analyst", "auditor", "admin"},
    "teams:manage": {"admin"},
    "users:read": {"auditor", "admin"},
    "users:manage": {"admin"},
    "roles:manage": {"admin"},
    "keys:read": {"analyst", "auditor", "admin"},
    "keys:manage": {"admin"},
    "audit:read": {"auditor", "admin"},
    "transcripts:read": {"auditor", "admin"},
    "data:erase": {"admin"},
    "exports:create": {"analyst", "auditor", "admin"},
    "policies:read": {"analyst", "auditor", "admin"},
    "limits:read": {"analyst", "auditor", "admin"},
    "limits:manage": {"admin"},
    "prompts:read": {"analyst", "auditor", "admin"},
    "prompts:manage": {"admin"},
    "feedback:write": {"auditor", "admin"},
}


@pytest.fixture
def rbac(tmp_path: Path, fake_upstream: FakeUpstream) -> Iterator[LiveWarden]:
    settings = make_settings(tmp_path, fake_upstream.base_url, auth={"admin_token": ADMIN_TOKEN})
    live = LiveWarden(settings)
    directory = live.services.directory
    setup = Change("cli:test", "default")
    for team in ("alpha", "beta"):
        directory.create_team(team, setup)
    for role in ROLES:
        directory.create_user(role, PASSWORD, setup, (Binding(role),))
    directory.create_user("team-admin", PASSWORD, setup, (Binding("admin", "alpha"),))
    directory.create_user("alpha-analyst", PASSWORD, setup, (Binding("analyst", "alpha"),))
    directory.create_user("other-tenant", PASSWORD, Change("cli:test", "acme"), (Binding("admin"),))
    live.root = live.base_url.removesuffix("/v1")  # type: ignore[attr-defined]
    yield live
    live.stop()


def test_every_route_declares_the_expected_permission(rbac: LiveWarden) -> None:
    found = {}
    for rule in rbac.app.url_map.iter_rules():
        view = rbac.app.view_functions[rule.endpoint]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found[(method, rule.rule)] = getattr(view, "warden_permission", "UNDECLARED")
    assert found == EXPECTED


def fill(rule: str) -> str:
    return (
        rule.replace("<username>", "nobody-here")
        .replace("<key_id>", "key_missing")
        .replace("<request_id>", "00000000-0000-4000-8000-000000000000")
        .replace("<name>", "no-such-prompt")
        .replace("<label>", "staging")
        .replace("<int:number>", "1")
    )


@pytest.mark.parametrize("who", ["anonymous", *ROLES, "admin-token"])
def test_route_by_role_matrix(rbac: LiveWarden, who: str) -> None:
    root = rbac.root  # type: ignore[attr-defined]
    if who == "anonymous":
        client = httpx.Client(base_url=root, timeout=10)
    elif who == "admin-token":
        client = httpx.Client(base_url=root, timeout=10, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    else:
        client = sign_in(root, who)
    role = "admin" if who == "admin-token" else who
    public_answers = {}
    # Logout last: it ends the session the other checks use.
    for (method, rule), permission in sorted(EXPECTED.items(), key=lambda item: item[0][1] == "/logout"):
        response = client.request(method, fill(rule), json={} if method in ("POST", "DELETE") else None)
        status = response.status_code
        if permission == "public":
            public_answers[(method, rule)] = status
            assert status not in (401, 403) or rule == "/login", (method, rule, status)
        elif permission == "api_key":
            assert status == 401, (method, rule, who, status)  # people and the admin token are not callers
        elif who == "anonymous":
            page = (
                rule == "/"
                or rule.startswith(("/transcripts/", "/prompts"))
                or (rule.startswith("/dashboards/") and not rule.endswith(".json"))
            )
            assert status == (302 if page else 401), (method, rule, status)
        elif permission == "signed_in" or role in HOLDERS[permission]:
            assert status not in (401, 403), (method, rule, who, status, response.text)
        else:
            assert status == 403, (method, rule, who, status)
            assert response.json()["error"]["code"] == "permission_denied"
    assert public_answers == {
        ("GET", "/login"): 200,
        ("POST", "/login"): 403,
        ("GET", "/healthz"): 200,
        ("GET", "/metrics"): 200,
    }


def test_denied_attempts_are_audited(rbac: LiveWarden) -> None:
    viewer = sign_in(rbac.root, "viewer")  # type: ignore[attr-defined]
    assert viewer.post("/api/teams", json={"name": "gamma"}).status_code == 403
    admin = sign_in(rbac.root, "admin")  # type: ignore[attr-defined]
    entries = admin.get("/api/audit").json()["entries"]
    denied = [e for e in entries if e["action"] == "denied"]
    assert denied[0]["actor"] == "session:viewer" and "POST /api/teams" in denied[0]["target"]
    assert denied[0]["outcome"] == "denied" and denied[0]["ip"] == "127.0.0.1"
    assert "gamma" not in admin.get("/api/teams").json()["teams"]


def test_dashboard_refusals_are_audited(rbac: LiveWarden) -> None:
    """Dashboards use the same guard as every other view, so their refusals are audited too."""
    rbac.services.directory.create_user("no-role", PASSWORD, Change("cli:test", "default"))
    person = sign_in(rbac.root, "no-role")  # type: ignore[attr-defined]
    assert person.get("/dashboards/cost").status_code == 403
    refused = person.get("/dashboards/cost.json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    admin = sign_in(rbac.root, "admin")  # type: ignore[attr-defined]
    denied = [e for e in admin.get("/api/audit").json()["entries"] if e["action"] == "denied"]
    assert {e["target"] for e in denied} == {
        "GET /dashboards/cost (dashboards:read)",
        "GET /dashboards/cost.json (dashboards:read)",
    }
    assert all(e["actor"] == "session:no-role" for e in denied)


def test_csrf_is_required_for_state_changes(rbac: LiveWarden) -> None:
    admin = sign_in(rbac.root, "admin")  # type: ignore[attr-defined]
    token = admin.headers.pop("x-csrf-token")
    assert admin.post("/api/teams", json={"name": "gamma"}).status_code == 403
    admin.headers["x-csrf-token"] = "forged-" + token
    assert admin.post("/api/teams", json={"name": "gamma"}).status_code == 403
    admin.headers["x-csrf-token"] = token
    assert admin.post("/api/teams", json={"name": "gamma"}).status_code == 201
    # The login form's own CSRF token is tied to its cookie.
    fresh = httpx.Client(base_url=rbac.root, timeout=10)  # type: ignore[attr-defined]
    form = login_form(fresh, "admin", PASSWORD)
    form["csrf_token"] = "forged"
    assert fresh.post("/login", data=form).status_code == 403
    assert "warden_session" not in fresh.cookies


def test_session_rotation_logout_and_timeouts(tmp_path: Path, fake_upstream: FakeUpstream) -> None:
    settings = make_settings(tmp_path, fake_upstream.base_url, auth={"session_idle_minutes": 0.02})
    clock = FakeClock()
    live = LiveWarden(settings, clock=clock)
    try:
        live.services.directory.create_user(
            "ada", PASSWORD, Change("cli:test", "default"), (Binding("viewer"),)
        )
        root = live.base_url.removesuffix("/v1")
        client = sign_in(root, "ada")
        first = client.cookies["warden_session"]
        response = client.post("/login", data=login_form(client, "ada", PASSWORD))
        assert response.status_code == 303
        second = client.cookies["warden_session"]
        assert second != first, "the session id must change at login"
        stale = httpx.Client(base_url=root, cookies={"warden_session": first})
        assert stale.get("/api/me").status_code == 401
        # Idle timeout (1.2 s here): an unused session expires.
        clock.advance(seconds=2)
        assert client.get("/api/me").status_code == 401
        client = sign_in(root, "ada")
        assert client.get("/").status_code == 200
        assert client.post("/logout").status_code == 303
        assert client.get("/api/me").status_code == 401
        assert httpx.get(root + "/", follow_redirects=False).headers["location"].startswith("/login")
    finally:
        live.stop()


def test_login_throttling(rbac: LiveWarden) -> None:
    client = httpx.Client(base_url=rbac.root, timeout=10)  # type: ignore[attr-defined]
    for _ in range(5):
        assert client.post("/login", data=login_form(client, "viewer", "wrong-password!!")).status_code == 401
    # Locked out: even the right password is refused for a while.
    assert client.post("/login", data=login_form(client, "viewer", PASSWORD)).status_code == 429
    admin = sign_in(rbac.root, "admin")  # type: ignore[attr-defined]
    reasons = [
        e["after"]["reason"]
        for e in admin.get("/api/audit?limit=50").json()["entries"]
        if e["action"] == "login" and e["outcome"] == "denied"
    ]
    assert reasons[:6] == ["throttled"] + ["password"] * 5


def test_sign_in_redirects_only_to_local_paths(rbac: LiveWarden) -> None:
    """The whole flow: a link to the login page with `next`, the form carries it, the redirect."""
    for target, landing in (
        ("/%09/evil.example", "/"),  # the tab passed the check, Werkzeug dropped it: "//evil.example"
        ("/dashboards/cost%3Fteam%3Dalpha", "/dashboards/cost?team=alpha"),
    ):
        client = httpx.Client(base_url=rbac.root, timeout=10)  # type: ignore[attr-defined]
        page = client.get(f"/login?next={target}")
        fields = re.findall(r'name="(csrf_token|next)" value="([^"]*)"', page.text)
        form = {"username": "viewer", "password": PASSWORD, **{k: html.unescape(v) for k, v in fields}}
        response = client.post("/login", data=form)
        assert response.status_code == 303
        assert response.headers["location"] == landing


@pytest.mark.parametrize(
    "target",
    [
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r\n/evil.example",
        "/\x00/evil.example",
        "\t//evil.example",
        "//evil.example",
        "/\\evil.example",
        "\\/evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/\u2028/evil.example",
        "",
        None,
    ],
)
def test_next_never_leaves_the_site(target: str | None) -> None:
    assert _safe_next(target) == "/"


def test_next_keeps_local_paths() -> None:
    assert _safe_next("/dashboards/cost?team=alpha#top") == "/dashboards/cost?team=alpha#top"
    assert _safe_next("/transcripts/abc") == "/transcripts/abc"


def test_no_privilege_escalation(rbac: LiveWarden) -> None:
    team_admin = sign_in(rbac.root, "team-admin")  # type: ignore[attr-defined]
    # Within its team it may manage keys and grant roles up to its own.
    assert (
        team_admin.post("/api/users/viewer/roles", json={"role": "analyst", "team": "alpha"}).status_code
        == 200
    )
    created = team_admin.post("/api/keys", json={"team": "alpha", "name": "ci"})
    assert created.status_code == 201 and created.json()["key"].startswith("wdn-")
    # But not tenant-wide, not in another team, and not user management.
    assert team_admin.post("/api/users/team-admin/roles", json={"role": "admin"}).status_code == 403
    assert (
        team_admin.post("/api/users/viewer/roles", json={"role": "viewer", "team": "beta"}).status_code == 403
    )
    assert team_admin.post("/api/keys", json={"team": "beta"}).status_code == 403
    assert team_admin.post("/api/users", json={"username": "x", "password": PASSWORD}).status_code == 403
    analyst = sign_in(rbac.root, "analyst")  # type: ignore[attr-defined]
    assert analyst.post("/api/users/analyst/roles", json={"role": "admin"}).status_code == 403
    admin = sign_in(rbac.root, "admin")  # type: ignore[attr-defined]
    roles = {u["username"]: u["roles"] for u in admin.get("/api/users").json()["users"]}
    assert roles["team-admin"] == [{"role": "admin", "team": "alpha"}]
    assert {"role": "analyst", "team": "alpha"} in roles["viewer"]


def test_team_scoping_and_tenant_isolation(rbac: LiveWarden) -> None:
    keys = rbac.services.keys
    keys.create("alpha", name="a-key")
    keys.create("beta", name="b-key")
    alpha_analyst = sign_in(rbac.root, "alpha-analyst")  # type: ignore[attr-defined]
    assert [k["name"] for k in alpha_analyst.get("/api/keys").json()["keys"]] == ["a-key"]
    assert alpha_analyst.get("/api/teams").json() == {"teams": ["alpha"]}
    other = sign_in(rbac.root, "other-tenant@acme")  # type: ignore[attr-defined]
    assert other.get("/api/keys").json() == {"keys": []}
    assert other.post("/api/users/viewer/disable").status_code == 404
    beta_key = next(k for k in keys.list() if k.name == "b-key")
    assert other.delete(f"/api/keys/{beta_key.id}").status_code == 404
    assert keys.get(beta_key.id).revoked_at is None  # type: ignore[union-attr]


def test_usernames_are_per_tenant(rbac: LiveWarden) -> None:
    """A name taken in another tenant is free in this one, so creating a user reveals nothing about other
    tenants; people of a tenant other than the default one sign in as name@tenant."""
    acme = sign_in(rbac.root, "other-tenant@acme")  # type: ignore[attr-defined]
    assert acme.get("/api/me").json()["tenant"] == "acme"
    theirs = PASSWORD + "-acme"
    made = acme.post("/api/users", json={"username": "viewer", "password": theirs, "role": "viewer"})
    assert made.status_code == 201 and made.json()["tenant"] == "acme"
    # Within one tenant a name is still unique, and saying so tells the tenant's admin nothing new.
    assert acme.post("/api/users", json={"username": "viewer", "password": theirs}).status_code == 409
    assert sign_in(rbac.root, "viewer@acme", theirs).get("/api/me").json()["tenant"] == "acme"  # type: ignore[attr-defined]
    for name in ("viewer", "viewer@default"):
        assert sign_in(rbac.root, name).get("/api/me").json()["tenant"] == "default"  # type: ignore[attr-defined]
    # Each password opens its own tenant's account only.
    for name, password in (("viewer@acme", PASSWORD), ("viewer", theirs)):
        client = httpx.Client(base_url=rbac.root, timeout=10)  # type: ignore[attr-defined]
        assert client.post("/login", data=login_form(client, name, password)).status_code == 401
    admin = sign_in(rbac.root, "admin")  # type: ignore[attr-defined]
    listed = [u for u in admin.get("/api/users").json()["users"] if u["username"] == "viewer"]
    assert [u["tenant"] for u in listed] == ["default"]


def test_failed_sign_ins_are_audited_in_the_accounts_tenant_only(rbac: LiveWarden) -> None:
    """A wrong password for acme's account is in acme's log; a name with no account is in the
    installation's system log; neither is in the default tenant's; and the caller cannot tell which."""
    answers = set()
    for name in ("other-tenant@acme", "nobody@acme", "nobody", "other-tenant", "a@b@c"):
        client = httpx.Client(base_url=rbac.root, timeout=10)  # type: ignore[attr-defined]
        response = client.post("/login", data=login_form(client, name, "wrong-password!!"))
        page = re.sub(r'name="csrf_token" value="[^"]*"', "", response.text).replace(html.escape(name), "")
        answers.add((response.status_code, page, response.headers.get("set-cookie", "").split("=")[0]))
    assert len(answers) == 1 and next(iter(answers))[0] == 401

    def refusals(client: httpx.Client) -> list[str]:
        entries = client.get("/api/audit?limit=100").json()["entries"]
        return [e["target"] for e in entries if e["action"] == "login" and e["outcome"] == "denied"]

    assert refusals(sign_in(rbac.root, "admin")) == []  # type: ignore[attr-defined]
    assert refusals(sign_in(rbac.root, "other-tenant@acme")) == ["user:other-tenant"]  # type: ignore[attr-defined]
    system = [e.target for e in audit.entries(rbac.services.db, tenant=audit.SYSTEM) if e.action == "login"]
    assert system == ["user:a@b@c", "user:other-tenant", "user:nobody", "user:nobody@acme"]


def test_admin_api_lifecycle_and_bad_input(rbac: LiveWarden) -> None:
    admin = httpx.Client(
        base_url=rbac.root,
        timeout=10,  # type: ignore[attr-defined]
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert admin.post("/api/teams", json={"name": "x'; DROP TABLE teams; --"}).status_code == 400
    assert admin.post("/api/teams", content=b"not json").status_code == 400
    assert admin.post("/api/teams", json={"name": "alpha"}).status_code == 409
    assert admin.post("/api/users", json={"username": "bo", "password": "short"}).status_code == 400
    made = admin.post("/api/users", json={"username": "bo", "password": PASSWORD, "role": "viewer"})
    assert made.status_code == 201 and made.json()["roles"] == [{"role": "viewer", "team": None}]
    assert admin.post("/api/users/bo/roles", json={"role": "wizard"}).status_code == 403
    bo = sign_in(rbac.root, "bo")  # type: ignore[attr-defined]
    assert admin.post("/api/users/bo/disable").json()["disabled"] is True
    assert bo.get("/api/me").status_code == 401, "disabling a user ends their sessions"
    created = admin.post("/api/keys", json={"team": "beta", "models": ["gpt-fake"], "expires_in_days": 7})
    assert created.status_code == 201
    key, key_id = created.json()["key"], created.json()["id"]
    assert key not in admin.get("/api/keys").text, "listing never shows a key"
    api = httpx.Client(base_url=rbac.base_url, headers={"authorization": f"Bearer {key}"})
    assert api.get("/models").json()["data"][0]["id"] == "gpt-fake"
    assert admin.delete(f"/api/keys/{key_id}").json()["revoked_at"] is not None
    assert api.get("/models").status_code == 401, "revocation is immediate"
    entries = audit.entries(rbac.services.db, limit=1000)
    assert len(entries) == 15  # 9 set-up changes, then: user, denied grant, login, disable, key, revoke
    # The chain is verified whole; the report counts this tenant's rows (one set-up user is acme's).
    ours = len([e for e in entries if e.tenant == "default"])
    assert ours == 14
    assert admin.get("/api/audit/verify").json() == {"ok": True, "rows": ours, "problem": "", "seq": None}


def test_audit_paging_refuses_sequence_numbers_the_database_cannot_hold(rbac: LiveWarden) -> None:
    """Found by the fuzzer: `before` past 64 bits was an OverflowError in SQLite's driver (a 500)."""
    admin = httpx.Client(
        base_url=rbac.root,  # type: ignore[attr-defined]
        timeout=10,
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    for before in ("99999999999999999999999", str(2**63), "-1"):
        refused = admin.get(f"/api/audit?before={before}")
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_request", before
    assert admin.get(f"/api/audit?before={2**63 - 1}").status_code == 200


def test_sign_in_abuse_is_throttled_per_address_and_counted_atomically(
    tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    """Lockout belongs to (user, address): a flood from one address cannot lock the admin out elsewhere;
    parallel wrong passwords cannot get more than `login_max_failures` password checks; refusals past
    the first per address and minute do not each cost an audit row."""
    import concurrent.futures

    settings = make_settings(
        tmp_path,
        fake_upstream.base_url,
        auth={"admin_token": ADMIN_TOKEN, "login_attempts_per_minute": 60},
        server={"trusted_proxies": 1},
    )
    live = LiveWarden(settings)
    try:
        live.services.directory.create_user(
            "viewer", PASSWORD, Change("cli:test", "default"), (Binding("viewer"),)
        )
        root = live.base_url.removesuffix("/v1")

        def attacker() -> httpx.Client:
            return httpx.Client(base_url=root, timeout=30, headers={"x-forwarded-for": "198.51.100.7"})

        # Each attempt with its own client and sign-in form (their CSRF cookies would clash otherwise).
        prepared = []
        for _ in range(16):
            client = attacker()
            prepared.append((client, login_form(client, "viewer", "wrong-password!!")))

        def wrong(attempt: tuple[httpx.Client, dict[str, str]]) -> int:
            return attempt[0].post("/login", data=attempt[1]).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(wrong, prepared))
        assert statuses.count(401) <= 5 and statuses.count(429) >= 11, statuses
        last = attacker()
        assert last.post("/login", data=login_form(last, "viewer", PASSWORD)).status_code == 429
        # The user, from their own address, is not locked out by someone else's flood.
        elsewhere = httpx.Client(base_url=root, timeout=10, headers={"x-forwarded-for": "203.0.113.9"})
        assert elsewhere.post("/login", data=login_form(elsewhere, "viewer", PASSWORD)).status_code == 303
        refusals = [
            e
            for e in httpx.get(
                root + "/api/audit", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
            ).json()["entries"]
            if e["action"] == "login" and e["outcome"] == "denied"
        ]
        # At most five rows per kind of refusal from the attacker this minute, not one per attempt.
        reasons = [r["after"]["reason"] for r in refusals]
        assert reasons.count("throttled") == 5 and reasons.count("password") <= 5, reasons
    finally:
        live.stop()


def test_the_login_gate_limits_each_address_and_aggregates_floods() -> None:
    from proxy.identity.sessions import LoginGate

    now = [0.0]
    gate = LoginGate(3, clock=lambda: now[0])
    assert [gate.admit("a") for _ in range(4)] == [True, True, True, False]
    assert gate.admit("b")  # per address
    audited = [gate.refusal("a", "rate_limited")[0] for _ in range(8)]
    assert audited == [True] * 5 + [False] * 3
    now[0] = 61.0
    assert gate.admit("a")  # a new minute
    audit_now, closed = gate.refusal("c", "csrf")
    assert audit_now and closed == [("a", "rate_limited", 3)]
