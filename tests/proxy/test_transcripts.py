"""Encrypted transcripts end to end: nothing readable at rest, reading needs a permission, a reason and
leaves an audit record, ciphertexts cannot be moved between rows, erasure crypto-shreds, exports are
signed, and fail-closed refuses what it cannot record."""

from __future__ import annotations

import importlib
import json
import os
import re
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from click.testing import CliRunner

from analytics.access import Binding
from proxy.cli.main import main
from proxy.compliance.crypto import BINARY, CryptoError, Sealed
from proxy.identity.directory import Change
from proxy.upstreams.fake import FakeUpstream
from tests.support import ADMIN_TOKEN, PASSWORD, LiveWarden, insert_request_row, make_settings, sign_in


@pytest.fixture
def live(tmp_path: Path, fake_upstream: FakeUpstream) -> Iterator[LiveWarden]:
    settings = make_settings(
        tmp_path,
        fake_upstream.base_url,
        auth={"admin_token": ADMIN_TOKEN},
        retention={"days": 90, "teams": {"short": 7}},
    )
    warden = LiveWarden(settings)
    setup = Change("cli:test", "default")
    for team in ("alpha", "beta"):
        warden.services.directory.create_team(team, setup)
    for name, binding in (
        ("auditor", Binding("auditor")),
        ("analyst", Binding("analyst")),
        ("alpha-auditor", Binding("auditor", "alpha")),
        ("alpha-analyst", Binding("analyst", "alpha")),
    ):
        warden.services.directory.create_user(name, PASSWORD, setup, (binding,))
    warden.root = warden.base_url.removesuffix("/v1")  # type: ignore[attr-defined]
    yield warden
    warden.stop()


def transcript_rows(warden: LiveWarden) -> list[tuple]:
    assert warden.services.sink.flush(20)
    return (
        warden.services.clickhouse()
        .query("SELECT request_id, ts, key_id, nonce, ciphertext FROM transcripts", column_formats=BINARY)
        .result_rows
    )


def chat(warden: LiveWarden, key: str, text: str, **extra: object) -> str:
    api = openai.OpenAI(base_url=warden.base_url, api_key=key, max_retries=0)
    raw = api.chat.completions.with_raw_response.create(
        model="gpt-fake",
        messages=[{"role": "user", "content": text}],
        **extra,  # type: ignore[arg-type]
    )
    return raw.headers["x-warden-request-id"]


def test_no_plaintext_at_rest(live: LiveWarden, tmp_path: Path) -> None:
    key = live.create_key("alpha")
    canaries = [f"CANARY-{uuid.uuid4().hex}" for _ in range(4)]
    chat(live, key, f"{canaries[0]} my email is jane.doe@example.com")
    api = openai.OpenAI(base_url=live.base_url, api_key=key, max_retries=0)
    list(
        api.chat.completions.create(
            model="gpt-fake",
            stream=True,
            messages=[{"role": "user", "content": f"{canaries[1]} call 555-0100"}],
        )
    )
    api.completions.create(model="gpt-fake", prompt=f"{canaries[2]} card 4111 1111 1111 1111")
    api.embeddings.create(model="text-embed-fake", input=[canaries[3]])
    assert live.rows("SELECT count() FROM transcripts") == [(4,)]
    live.services.sink.flush(20)
    checked = 0
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            checked += 1
            for canary in canaries:
                assert canary.encode() not in data, f"plaintext {canary} found at rest in {path}"
            assert b"jane.doe@example.com" not in data, f"an e-mail address found at rest in {path}"
    assert checked > 20  # ClickHouse parts, the SQLite file, spool segments, the key file


def test_reading_needs_permission_reason_and_is_audited(live: LiveWarden) -> None:
    request_id = chat(live, live.create_key("alpha"), "the secret plan")
    other_team = chat(live, live.create_key("beta"), "beta's business")
    live.services.sink.flush(20)
    auditor = sign_in(live.root, "auditor")  # type: ignore[attr-defined]
    assert auditor.post(f"/api/transcripts/{request_id}", json={}).status_code == 400  # no reason
    got = auditor.post(f"/api/transcripts/{request_id}", json={"reason": "investigating ticket 42"})
    assert got.status_code == 200
    body = got.json()
    assert body["request"] == [{"role": "user", "content": "the secret plan"}]
    assert body["response"][0]["message"]["content"] == "the secret plan" and body["team"] == "alpha"
    analyst = sign_in(live.root, "analyst")  # type: ignore[attr-defined]
    assert analyst.post(f"/api/transcripts/{request_id}", json={"reason": "just curious!"}).status_code == 403
    alpha_auditor = sign_in(live.root, "alpha-auditor")  # type: ignore[attr-defined]
    assert (
        alpha_auditor.post(f"/api/transcripts/{other_team}", json={"reason": "not my team"}).status_code
        == 403
    )
    assert (
        auditor.post(f"/api/transcripts/{uuid.uuid4()}", json={"reason": "a missing one"}).status_code == 404
    )
    admin = httpx.Client(base_url=live.root, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})  # type: ignore[attr-defined]
    reads = [e for e in admin.get("/api/audit").json()["entries"] if e["action"] == "transcript.read"]
    assert len(reads) == 1 and reads[0]["actor"] == "session:auditor"
    assert reads[0]["after"] == {"reason": "investigating ticket 42", "team": "alpha"}
    page = auditor.get(f"/transcripts/{request_id}")
    assert page.status_code == 200 and "Reason for reading" in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    shown = auditor.post(
        f"/transcripts/{request_id}", data={"reason": "page read test", "csrf_token": token.group(1)}
    )
    assert "the secret plan" in shown.text


def test_a_cross_site_link_cannot_read_a_transcript(live: LiveWarden) -> None:
    """Reading decrypts and writes the audit log: a GET link (or a form without the session's CSRF
    token) from another site must not make an auditor read a transcript with the attacker's reason."""
    request_id = chat(live, live.create_key("alpha"), "the secret plan")
    live.services.sink.flush(20)
    auditor = sign_in(live.root, "auditor")  # type: ignore[attr-defined]
    token = auditor.headers.pop("x-csrf-token")
    link = auditor.get(f"/api/transcripts/{request_id}", params={"reason": "attacker's reason here"})
    assert link.status_code == 405 and "the secret plan" not in link.text
    forged = auditor.post(f"/api/transcripts/{request_id}", json={"reason": "attacker's reason here"})
    assert forged.status_code == 403 and forged.json()["error"]["code"] == "csrf_failed"
    page = auditor.post(f"/transcripts/{request_id}", data={"reason": "attacker's reason here"})
    assert page.status_code == 403 and "the secret plan" not in page.text
    admin = httpx.Client(base_url=live.root, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})  # type: ignore[attr-defined]
    assert [e for e in admin.get("/api/audit").json()["entries"] if e["action"] == "transcript.read"] == []
    read = auditor.post(
        f"/api/transcripts/{request_id}",
        json={"reason": "ticket 42, on purpose"},
        headers={"x-csrf-token": token},
    )
    assert read.status_code == 200 and read.json()["request"][0]["content"] == "the secret plan"


def test_a_ciphertext_moved_to_another_row_fails(live: LiveWarden) -> None:
    first = chat(live, live.create_key("alpha"), "first message")
    second = chat(live, live.create_key("alpha"), "second message")
    rows = {str(r[0]): r for r in transcript_rows(live)}
    _, ts_second, *_ = rows[second]
    _, _, key_id, nonce, ciphertext = rows[first]
    with pytest.raises(CryptoError, match="does not match its row"):
        live.services.keyring.open("default", second, ts_second, Sealed(key_id, nonce, ciphertext))
    assert live.services.keyring.open("default", first, rows[first][1], Sealed(key_id, nonce, ciphertext))


def test_erasure_crypto_shreds_a_subject(live: LiveWarden) -> None:
    key = live.create_key("alpha")
    kept = chat(live, key, "keep me", user="someone-else")
    erased = chat(live, key, "forget me", user="end-user-42")
    rows = {str(r[0]): r for r in transcript_rows(live)}
    copy = rows[erased]  # a backup of the ciphertext taken before erasure
    admin = httpx.Client(base_url=live.root, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})  # type: ignore[attr-defined]
    report = admin.post("/api/erasure", json={"subject": "end-user-42"}).json()
    assert report == {
        "keys_destroyed": 1,
        "requests_deleted": 1,
        "transcripts_deleted": 1,
        "exports_deleted": 0,
    }
    with pytest.raises(CryptoError, match="destroyed"):
        live.services.keyring.open("default", erased, copy[1], Sealed(copy[2], copy[3], copy[4]))
    remaining = [str(r[0]) for r in live.rows("SELECT request_id FROM requests")]
    assert kept in remaining and erased not in remaining
    assert live.rows("SELECT count() FROM requests WHERE subject_hash != ''") == [(1,)]
    assert "end-user-42" not in json.dumps(admin.get("/api/audit").json()), (
        "the audit log holds no raw subject id"
    )


def test_erasing_a_tenant_empties_its_rows_and_rollups(live: LiveWarden) -> None:
    key = live.create_key("alpha")
    chat(live, key, "mail me at ann@example.org")
    tables = (
        "requests",
        "transcripts",
        "requests_hourly",
        "requests_hourly_team",
        "policy_hourly",
        "findings_hourly",
    )
    assert all(live.rows(f"SELECT count() FROM {t}")[0][0] > 0 for t in tables)
    admin = httpx.Client(base_url=live.root, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})  # type: ignore[attr-defined]
    assert admin.post("/api/erasure", json={"all_of_tenant": True}).status_code == 200
    assert {t: live.rows(f"SELECT count() FROM {t}")[0][0] for t in tables} == dict.fromkeys(tables, 0)


def test_retention_is_copied_into_rows(live: LiveWarden) -> None:
    chat(live, live.create_key("alpha"), "ninety days")
    live.services.directory.create_team("short", Change("cli:test", "default"))
    chat(live, live.create_key("short"), "seven days")
    assert live.rows("SELECT team, retention_days FROM requests ORDER BY team") == [
        ("alpha", 90),
        ("short", 7),
    ]
    assert live.rows("SELECT team, retention_days FROM transcripts ORDER BY team") == [
        ("alpha", 30),
        ("short", 7),
    ]


def test_signed_export_and_verify(live: LiveWarden, tmp_path: Path) -> None:
    chat(live, live.create_key("alpha"), "exported message")
    chat(live, live.create_key("beta"), "not exported")
    live.services.sink.flush(20)
    admin = httpx.Client(base_url=live.root, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})  # type: ignore[attr-defined]
    bad = admin.post("/api/exports", json={"since": "2026-01-01T00:00:00Z", "until": "2020-01-01T00:00:00Z"})
    assert bad.status_code == 400
    made = admin.post(
        "/api/exports",
        json={
            "since": "2020-01-01T00:00:00Z",
            "until": "2100-01-01T00:00:00Z",
            "teams": ["alpha"],
            "transcripts": True,
            "reason": "quarterly compliance review",
            "format": "jsonl",
        },
    )
    assert made.status_code == 201, made.text
    manifest = made.json()
    counts = {f["name"]: f["rows"] for f in manifest["files"]}
    assert (
        counts["requests.jsonl"] == 1 and counts["transcripts.jsonl"] == 1 and counts["audit_log.jsonl"] > 0
    )
    # `exports.export` writes the audit record itself, so the CLI leaves the same one.
    record = next(e for e in admin.get("/api/audit").json()["entries"] if e["action"] == "export.create")
    assert record["target"] == f"export:{manifest['id']}" and record["actor"] == "token:admin-token"
    assert record["after"]["reason"] == "quarterly compliance review"
    assert record["after"]["teams"] == ["alpha"] and record["after"]["files"] == list(counts)
    directory = Path(live.settings.exports.dir) / manifest["id"]
    public_key = Path(live.settings.exports.signing_key).with_suffix(".pub")
    runner = CliRunner()
    ok = runner.invoke(main, ["export", "verify", str(directory), "--public-key", str(public_key)])
    assert ok.exit_code == 0, ok.output
    transcript = json.loads((directory / "transcripts.jsonl").read_text())
    assert transcript["request"][0]["content"] == "exported message"
    download = admin.get(f"/api/exports/{manifest['id']}/requests.jsonl")
    assert download.status_code == 200 and json.loads(download.text)["team"] == "alpha"
    (directory / "requests.jsonl").write_text(download.text.replace("alpha", "gamma"))
    tampered = runner.invoke(main, ["export", "verify", str(directory), "--public-key", str(public_key)])
    assert tampered.exit_code == 1 and "requests.jsonl: SHA-256 differs" in tampered.output


def test_team_exports_leave_out_the_tenant_audit_log(live: LiveWarden) -> None:
    """The admin audit log is tenant-wide: an export carries it only for a tenant-wide `audit:read`
    (GET /api/audit answers 403 to the same team-bound people)."""
    admin = httpx.Client(base_url=live.root, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})  # type: ignore[attr-defined]
    made = admin.post("/api/keys", json={"team": "beta", "name": "beta-secret-project"})
    assert made.status_code == 201, made.text
    window = {"since": "2020-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"}
    for username in ("alpha-analyst", "alpha-auditor"):
        person = sign_in(live.root, username)  # type: ignore[attr-defined]
        assert person.get("/api/audit").status_code == 403
        exported = person.post("/api/exports", json={**window, "teams": ["alpha"]})
        assert exported.status_code == 201, exported.text
        names = [f["name"] for f in exported.json()["files"]]
        assert names == ["requests.jsonl", "feedback.jsonl"], names
        directory = Path(live.settings.exports.dir) / exported.json()["id"]
        assert not (directory / "audit_log.jsonl").exists()
        assert person.get(f"/api/exports/{exported.json()['id']}/audit_log.jsonl").status_code in (403, 404)
    tenant_wide = admin.post("/api/exports", json=window)
    assert tenant_wide.status_code == 201
    audit_file = {f["name"]: f["rows"] for f in tenant_wide.json()["files"]}["audit_log.jsonl"]
    assert audit_file > 0
    directory = Path(live.settings.exports.dir) / tenant_wide.json()["id"]
    assert "beta-secret-project" in (directory / "audit_log.jsonl").read_text()


def test_background_export_reports_progress_and_is_tenant_scoped(live: LiveWarden, tmp_path: Path) -> None:
    """A large export need not hold a serving thread: `background: true` answers 202 at once, the status
    shows rows written per file and then the files, and only the exporter's tenant and teams see it."""
    for n in range(3):
        chat(live, live.create_key("alpha"), f"background {n}")
    live.services.sink.flush(20)
    admin = httpx.Client(base_url=live.root, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})  # type: ignore[attr-defined]
    window = {"since": "2020-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"}
    assert admin.post("/api/exports", json={**window, "background": "yes"}).status_code == 400
    started = admin.post(
        "/api/exports",
        json={
            **window,
            "teams": ["alpha"],
            "transcripts": True,
            "reason": "background review",
            "background": True,
        },
    )
    assert started.status_code == 202, started.text
    body = started.json()
    assert (
        body["state"] in ("queued", "running", "done") and body["status_url"] == f"/api/exports/{body['id']}"
    )
    deadline = time.monotonic() + 20
    status = body
    while status["state"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.05)
        status = admin.get(body["status_url"]).json()
    assert status["state"] == "done", status
    assert {f["name"]: f["rows"] for f in status["files"]} == {
        "requests.jsonl": 3,
        "audit_log.jsonl": status["rows"]["audit_log"],
        "transcripts.jsonl": 3,
        "feedback.jsonl": 0,
    }
    assert status["rows"]["requests"] == 3 and status["rows"]["transcripts"] == 3
    assert admin.get(f"/api/exports/{body['id']}/transcripts.jsonl").status_code == 200
    live.services.directory.create_user(
        "beta-analyst", PASSWORD, Change("cli:test", "default"), (Binding("analyst", "beta"),)
    )
    beta = sign_in(live.root, "beta-analyst")  # type: ignore[attr-defined]
    assert beta.get(body["status_url"]).status_code == 403, "an alpha export is not beta's to watch"
    assert admin.get("/api/exports/exp_0000000000000000").status_code == 404
    assert admin.get("/api/exports/../../etc").status_code == 404
    # Erasure takes the background export and its record with it.
    assert admin.post("/api/erasure", json={"all_of_tenant": True}).status_code == 200
    assert admin.get(body["status_url"]).status_code == 404
    assert not (Path(live.settings.exports.dir) / body["id"]).exists()


def test_metrics_expose_the_pipeline(live: LiveWarden) -> None:
    chat(live, live.create_key("alpha"), "count me")
    live.services.sink.flush(20)
    text = httpx.get(live.root + "/metrics").text  # type: ignore[attr-defined]
    assert re.search(r"^warden_events_inserted_total 1\.0$", text, re.M)
    assert re.search(r"^warden_events_lost_total 0\.0$", text, re.M)
    assert re.search(r"^warden_overhead_seconds_count 1\.0$", text, re.M)
    assert "alpha" not in text


def test_fail_closed_refuses_unrecordable_requests(tmp_path: Path, fake_upstream: FakeUpstream) -> None:
    settings = make_settings(tmp_path, fake_upstream.base_url, compliance={"fail_closed": True})
    live = LiveWarden(settings)
    try:
        key = live.create_key("alpha")
        assert chat(live, key, "recorded")
        spool = Path(settings.analytics.spool_dir)
        spool.chmod(0o500)  # the disk refuses new files (a full or read-only disk)
        # and the open segment refuses writes (EBADF), as a failed disk would
        live.services.sink._spool._fd = os.open("/dev/null", os.O_RDONLY)
        api = openai.OpenAI(base_url=live.base_url, api_key=key, max_retries=0)
        with pytest.raises(openai.InternalServerError) as caught:
            api.chat.completions.create(model="gpt-fake", messages=[{"role": "user", "content": "x"}])
        assert caught.value.status_code == 503
        assert caught.value.body["code"] == "recording_unavailable"
    finally:
        Path(settings.analytics.spool_dir).chmod(0o700)
        live.stop()


def test_csv_exports_neutralise_formulas(live: LiveWarden) -> None:
    """A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@`: a caller-chosen string in an export
    must arrive as text."""
    import csv
    from datetime import UTC, datetime

    formula = '=HYPERLINK("https://evil.example","x")'
    insert_request_row(live, formula, datetime(2026, 1, 1, tzinfo=UTC))
    admin = httpx.Client(base_url=live.root, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})  # type: ignore[attr-defined]
    made = admin.post(
        "/api/exports",
        json={"since": "2020-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z", "format": "csv"},
    )
    assert made.status_code == 201, made.text
    directory = Path(live.settings.exports.dir) / made.json()["id"]
    with (directory / "requests.csv").open(newline="") as handle:
        models = [row["model"] for row in csv.DictReader(handle)]
    assert models == ["'" + formula]


def test_exports_expire_are_erased_and_downloads_are_audited(live: LiveWarden) -> None:
    """Decrypted exports do not outlive their purpose: each download is on record, an export older than
    `exports.keep_days` is gone, and an erasure deletes the tenant's exports."""
    chat(live, live.create_key("alpha"), "to be exported", user="subject-1")
    live.services.sink.flush(20)
    admin = httpx.Client(base_url=live.root, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})  # type: ignore[attr-defined]
    window = {"since": "2020-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"}

    def make() -> Path:
        made = admin.post(
            "/api/exports", json={**window, "transcripts": True, "reason": "subject access request"}
        )
        assert made.status_code == 201, made.text
        return Path(live.settings.exports.dir) / made.json()["id"]

    fresh = make()
    assert admin.get(f"/api/exports/{fresh.name}/transcripts.jsonl").status_code == 200
    downloads = [e for e in admin.get("/api/audit").json()["entries"] if e["action"] == "export.download"]
    assert [d["target"] for d in downloads] == [f"export:{fresh.name}/transcripts.jsonl"]

    manifest = json.loads((fresh / "manifest.json").read_text())
    manifest["created_at"] = "2020-01-01T00:00:00+00:00"  # older than exports.keep_days (7)
    (fresh / "manifest.json").write_text(json.dumps(manifest))
    gone = admin.get(f"/api/exports/{fresh.name}/transcripts.jsonl")
    assert gone.status_code == 404 and "expired" in gone.json()["error"]["message"]
    assert not fresh.exists()

    kept = make()
    erased = admin.post("/api/erasure", json={"subject": "subject-1"})
    assert erased.status_code == 200 and erased.json()["exports_deleted"] == 1
    assert not kept.exists()


ROWS = 9000


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_memory_stays_bounded_whatever_its_size(live: LiveWarden, tmp_path: Path, fmt: str) -> None:
    """Transcripts are read, decrypted and written a block at a time: the export's peak memory is a small
    fraction of what it writes (it used to hold every transcript at once)."""
    from datetime import UTC, datetime, timedelta

    from analytics.events import TRANSCRIPT_COLUMNS
    from proxy.compliance.exports import ExportSpec, export, signing_key

    keyring, start = live.services.keyring, datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for n in range(ROWS):
        request_id, ts = uuid.uuid4(), start + timedelta(seconds=n)
        content = {
            "route": "chat.completions",
            "model": "m",
            "request": [{"role": "user", "content": "x" * 2000}],
        }
        sealed = keyring.seal("default", "", request_id, ts, content)
        rows.append(
            ("default", "alpha", request_id, ts, "", sealed.key_id, sealed.nonce, sealed.ciphertext, 0)
        )
    live.services.clickhouse().insert("transcripts", rows, column_names=list(TRANSCRIPT_COLUMNS))
    spec = ExportSpec("default", start, start + timedelta(days=1), fmt, None, True)
    # Workers no longer import pandas up front, and pyarrow imports it on first use: not the export's memory.
    for module in ("pyarrow.parquet", "pandas"):  # pyarrow asks pandas about each batch
        importlib.import_module(module)
    tracemalloc.start()
    try:
        manifest = export(
            spec,
            tmp_path / f"big-{fmt}",
            clickhouse=live.services.clickhouse(),
            db=live.services.db,
            keyring=keyring,
            key=signing_key(Path(live.settings.exports.signing_key)),
            actor="test",
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    written = {f["name"]: f for f in manifest["files"]}[f"transcripts.{fmt}"]
    assert written["rows"] == ROWS
    assert peak < ROWS * 2_000 / 4, f"peak {peak / 1e6:.1f} MB for {ROWS * 2000 / 1e6:.0f} MB of transcripts"


def test_an_export_an_erasure_deletes_while_it_is_written_is_a_conflict(
    live: LiveWarden, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the fuzzer: an erasure (which deletes the tenant's exports) between an export's
    manifest and its signature made the export's next write fail: a 500."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from proxy.compliance.exports import sweep
    from proxy.identity import admin_api

    exports_dir = Path(live.settings.exports.dir)

    class ErasedWhileSigning:
        def __init__(self, key: Ed25519PrivateKey) -> None:
            self.key = key

        def public_key(self) -> Any:
            return self.key.public_key()

        def sign(self, body: bytes) -> bytes:
            sweep(exports_dir, keep=timedelta(0), tenant="default")  # what an erasure does meanwhile
            return self.key.sign(body)

    monkeypatch.setattr(
        admin_api, "signing_key", lambda path: ErasedWhileSigning(Ed25519PrivateKey.generate())
    )
    admin = httpx.Client(base_url=live.root, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})  # type: ignore[attr-defined]
    made = admin.post("/api/exports", json={"since": "2020-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"})
    assert made.status_code == 409, made.text
    assert "erasure" in made.json()["error"]["message"]
    assert list(exports_dir.glob("exp_*")) == []
