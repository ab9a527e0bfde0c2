"""Feedback on a live Warden: an API key scores its tenant's requests only, comments are sealed at rest
and open through the KeyRing, bad input is a 400, people need `feedback:write` in the request's team,
and exports and fine-tuning data carry the scores."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from analytics.access import Binding
from proxy.cli.main import main
from proxy.compliance.crypto import BINARY, Sealed
from proxy.compliance.erasure import erase
from proxy.compliance.exports import ExportSpec, export, finetune, signing_key
from proxy.identity.directory import Change
from proxy.upstreams.fake import FakeUpstream
from tests.support import ADMIN_TOKEN, PASSWORD, LiveWarden, make_settings, sign_in

COMMENT = "FEEDBACK-CANARY wrong about the refund policy"


def ask(warden: LiveWarden, key: str, text: str = "hello") -> str:
    response = httpx.post(
        f"{warden.base_url}/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "gpt-fake", "messages": [{"role": "user", "content": text}]},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.headers["x-warden-request-id"]


def give(warden: LiveWarden, key: str, body: Any) -> httpx.Response:
    return httpx.post(
        f"{warden.base_url}/warden/feedback",
        headers={"authorization": f"Bearer {key}"},
        json=body,
        timeout=10,
    )


def test_a_key_scores_its_own_request_and_the_comment_is_sealed(warden: LiveWarden) -> None:
    key = warden.create_key("alpha")
    # Scored at once, before the sink's flush: the view waits for the pending row.
    request_id = ask(warden, key)
    given = give(warden, key, {"request_id": request_id, "score": 0.5, "label": "wrong", "comment": COMMENT})
    assert given.status_code == 201, given.text
    body = given.json()
    assert body["request_id"] == request_id and body["source"] == "end_user" and body["comment"] is True
    assert COMMENT not in given.text
    key_id = warden.services.keys.authenticate(key).key_id  # type: ignore[union-attr]
    rows = warden.rows_dicts("SELECT * FROM feedback")
    assert len(rows) == 1
    row = rows[0]
    assert (row["tenant"], row["team"], str(row["request_id"])) == ("default", "alpha", request_id)
    assert (row["score"], row["label"], row["source"], row["actor"]) == (
        0.5,
        "wrong",
        "end_user",
        f"key:{key_id}",
    )
    # No column of any table holds the comment in clear.
    for table in ("feedback", "requests", "transcripts"):
        dumped = warden.rows(f"SELECT toString(tuple(*)) FROM {table}")
        assert all("FEEDBACK-CANARY" not in text for (text,) in dumped), table
    sealed = warden.services.clickhouse().query(
        "SELECT feedback_id, ts, key_id, nonce, ciphertext FROM feedback", column_formats=BINARY
    )
    feedback_id, ts, sealed_key, nonce, ciphertext = sealed.result_rows[0]
    opened = warden.services.keyring.open("default", feedback_id, ts, Sealed(sealed_key, nonce, ciphertext))
    assert opened == {"comment": COMMENT}
    # A score alone: no comment, nothing sealed.
    assert give(warden, key, {"request_id": request_id, "score": -3}).status_code == 201
    bare = warden.rows("SELECT key_id, ciphertext FROM feedback WHERE score = -3")
    assert bare == [("", "")]
    # A merge applies the TTL: rows kept "forever" (retention 0) must survive it.
    warden.services.clickhouse().command("OPTIMIZE TABLE feedback FINAL")
    assert warden.rows("SELECT count() FROM feedback") == [(2,)]


def test_foreign_and_unknown_requests_answer_the_same_404(warden: LiveWarden) -> None:
    ours = ask(warden, warden.create_key("alpha"))
    theirs = warden.services.keys.create("gamma", tenant="acme")[1]
    answers = set()
    for request_id in (ours, str(uuid.uuid4())):
        refused = give(warden, theirs, {"request_id": request_id, "score": 1})
        assert refused.status_code == 404
        error = refused.json()["error"]
        answers.add((error["code"], error["message"].replace(request_id, "<id>")))
    assert len(answers) == 1
    assert warden.rows("SELECT count() FROM feedback") == [(0,)]
    assert give(warden, "wdn-not-a-key", {"request_id": ours, "score": 1}).status_code == 401


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"score": 1}, "request_id"),
        ({"request_id": "not-a-uuid", "score": 1}, "request_id"),
        ({"request_id": 12, "score": 1}, "request_id"),
        ({"request_id": "{id}"}, "score"),
        ({"request_id": "{id}", "score": "high"}, "score"),
        ({"request_id": "{id}", "score": True}, "score"),
        ({"request_id": "{id}", "score": 1e7}, "score"),
        ({"request_id": "{id}", "label": "not safe <b>"}, "label"),
        ({"request_id": "{id}", "label": "x" * 65}, "label"),
        ({"request_id": "{id}", "score": 1, "source": "ceo"}, "source"),
        ({"request_id": "{id}", "score": 1, "source": "reviewer"}, "source"),  # an API key is no person
        ({"request_id": "{id}", "score": 1, "comment": 5}, "comment"),
        ({"request_id": "{id}", "score": 1, "rating": 5}, "rating"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    warden_chdb: LiveWarden, body: dict[str, Any], param: str
) -> None:
    key = warden_chdb.create_key("alpha")
    request_id = ask(warden_chdb, key)
    filled = {k: request_id if v == "{id}" else v for k, v in body.items()}
    refused = give(warden_chdb, key, filled)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error


def test_non_finite_scores_are_refused(warden_chdb: LiveWarden) -> None:
    key = warden_chdb.create_key("alpha")
    request_id = ask(warden_chdb, key)
    for raw in ("NaN", "Infinity", "-Infinity"):
        refused = httpx.post(
            f"{warden_chdb.base_url}/warden/feedback",
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
            content=f'{{"request_id": "{request_id}", "score": {raw}}}',
        )
        assert refused.status_code == 400, (raw, refused.text)


@pytest.fixture
def people(tmp_path: Path, fake_upstream: FakeUpstream) -> Iterator[LiveWarden]:
    live = LiveWarden(make_settings(tmp_path, fake_upstream.base_url, auth={"admin_token": ADMIN_TOKEN}))
    setup = Change("cli:test", "default")
    for team in ("alpha", "beta"):
        live.services.directory.create_team(team, setup)
    for name, binding in (
        ("auditor", Binding("auditor")),
        ("analyst", Binding("analyst")),
        ("alpha-auditor", Binding("auditor", "alpha")),
    ):
        live.services.directory.create_user(name, PASSWORD, setup, (binding,))
    live.root = live.base_url.removesuffix("/v1")  # type: ignore[attr-defined]
    yield live
    live.stop()


def test_people_need_feedback_write_in_the_requests_team(people: LiveWarden) -> None:
    alpha = ask(people, people.create_key("alpha"))
    beta = ask(people, people.create_key("beta"))
    root = people.root  # type: ignore[attr-defined]
    analyst = sign_in(root, "analyst")
    refused = analyst.post("/v1/warden/feedback", json={"request_id": alpha, "score": 1})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    auditor = sign_in(root, "auditor")
    given = auditor.post("/v1/warden/feedback", json={"request_id": beta, "label": "good"})
    assert given.status_code == 201 and given.json()["source"] == "reviewer"
    team_auditor = sign_in(root, "alpha-auditor")
    assert team_auditor.post("/v1/warden/feedback", json={"request_id": alpha, "score": 2}).status_code == 201
    # Another team's request is as unknown to it as a made-up id.
    assert team_auditor.post("/v1/warden/feedback", json={"request_id": beta, "score": 2}).status_code == 404
    # A session's state change needs its CSRF token.
    team_auditor.headers.pop("x-csrf-token")
    assert team_auditor.post("/v1/warden/feedback", json={"request_id": alpha, "score": 2}).status_code == 403
    actors = sorted(a for (a,) in people.rows("SELECT actor FROM feedback"))
    assert actors == ["session:alpha-auditor", "session:auditor"]


def test_exports_carry_feedback_and_finetune_keeps_well_rated(people: LiveWarden, tmp_path: Path) -> None:
    key = people.create_key("alpha")
    good, poor, _unscored = (ask(people, key, text) for text in ("good one", "poor one", "unscored one"))
    for request_id, scores in ((good, (1, 0.5)), (poor, (1, -1))):
        for score in scores:
            assert give(people, key, {"request_id": request_id, "score": score}).status_code == 201
    assert give(people, key, {"request_id": good, "label": "kept", "comment": COMMENT}).status_code == 201
    services = people.services
    assert services.sink.flush(20)
    now = datetime.now(UTC)
    window = {"since": now - timedelta(hours=1), "until": now + timedelta(hours=1)}
    out = tmp_path / "train.jsonl"
    spec = ExportSpec("default", **window, transcripts=True)
    client, keyring = services.clickhouse(), services.keyring
    assert finetune(spec, out, clickhouse=client, keyring=keyring, min_score=0.7) == 1
    assert "good one" in out.read_text() and "poor one" not in out.read_text()
    assert finetune(spec, out, clickhouse=client, keyring=keyring, min_score=0) == 2
    assert finetune(spec, out, clickhouse=client, keyring=keyring) == 3
    command = ["export", "finetune", "--config", str(tmp_path / "warden.yaml"), "--out", str(out)]
    since, until = window["since"].isoformat(), window["until"].isoformat()
    cli = CliRunner().invoke(main, [*command, "--since", since, "--until", until, "--min-score", "0.7"])
    assert cli.exit_code == 0 and "wrote 1 records" in cli.output, cli.output
    for transcripts in (False, True):
        directory = tmp_path / f"export-{transcripts}"
        export(
            ExportSpec("default", **window, transcripts=transcripts),
            directory,
            clickhouse=client,
            db=services.db,
            keyring=keyring,
            key=signing_key(tmp_path / "signing.key"),
            actor="cli:test",
        )
        rows = [json.loads(line) for line in (directory / "feedback.jsonl").read_text().splitlines()]
        assert sorted(r["request_id"] for r in rows) == sorted([good, good, good, poor, poor])
        commented = [r for r in rows if r["has_comment"]]
        assert len(commented) == 1 and commented[0]["label"] == "kept"
        assert commented[0]["comment"] == (COMMENT if transcripts else None)
        assert (COMMENT in (directory / "feedback.jsonl").read_text()) is transcripts


def test_erasing_a_subject_erases_its_feedback(warden_chdb: LiveWarden) -> None:
    key = warden_chdb.create_key("alpha")
    theirs, others = (
        httpx.post(
            f"{warden_chdb.base_url}/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}], "user": user},
            timeout=10,
        ).headers["x-warden-request-id"]
        for user in ("subject-1", "subject-2")
    )
    for request_id in (theirs, others):
        assert (
            give(warden_chdb, key, {"request_id": request_id, "score": 1, "comment": COMMENT}).status_code
            == 201
        )
    services = warden_chdb.services
    assert services.sink.flush(20)
    erase(
        services.keyring, services.clickhouse(), services.db, tenant="default", subject="subject-1", actor="t"
    )
    assert [str(r) for (r,) in warden_chdb.rows("SELECT request_id FROM feedback")] == [others]


class _Down:
    def query(self, *args: object, **kwargs: object) -> None:
        raise ConnectionError("ClickHouse is down")


def test_clickhouse_down_is_a_503_and_nothing_leaks(
    warden_chdb: LiveWarden, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = warden_chdb.create_key("alpha")
    request_id = ask(warden_chdb, key)
    monkeypatch.setattr(warden_chdb.services, "clickhouse", _Down)
    refused = give(warden_chdb, key, {"request_id": request_id, "score": 1, "comment": COMMENT})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "storage_unavailable"
    assert COMMENT not in refused.text
