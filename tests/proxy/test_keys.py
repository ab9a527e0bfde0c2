"""Virtual API keys on a real SQLite database: hashed at rest, shown once, revocable, scoped."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from proxy.db import make_engine, make_sessions, utcnow
from proxy.identity.directory import IdentityError
from proxy.identity.keys import KeyStore
from proxy.migrate import upgrade_sql


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    upgrade_sql(url)
    return KeyStore(make_sessions(make_engine(url)), cache_seconds=60)


def test_key_is_stored_hashed_and_listed_without_secret(store: KeyStore, tmp_path: Path) -> None:
    info, plaintext = store.create("alpha", name="ci", project="chatbot", models=["m1"])
    assert plaintext.startswith("wdn-") and len(plaintext) > 40
    raw_db = (tmp_path / "meta.db").read_bytes()
    assert plaintext.encode() not in raw_db
    with store._sessions() as session:
        stored = session.execute(text("SELECT key_hash FROM api_keys")).scalar_one()
    assert stored != plaintext and len(stored) == 64
    (listed,) = store.list()
    assert listed.id == info.id and listed.team == "alpha" and listed.models == ("m1",)
    assert plaintext not in repr(listed)
    principal = store.authenticate(plaintext)
    assert principal is not None
    assert (principal.tenant, principal.team, principal.project) == ("default", "alpha", "chatbot")
    assert principal.may_use("m1") and not principal.may_use("m2")


def test_revocation_is_immediate_despite_the_cache(store: KeyStore) -> None:
    info, plaintext = store.create("alpha")
    assert store.authenticate(plaintext) is not None  # now cached for 60 s
    assert store.revoke(info.id)
    assert store.authenticate(plaintext) is None
    assert store.list()[0].revoked_at is not None
    assert not store.revoke("key_unknown")


def test_expiry_and_unknown_keys(store: KeyStore) -> None:
    _, plaintext = store.create("alpha", expires_at=utcnow() + timedelta(hours=1))
    assert store.authenticate(plaintext) is not None
    assert store.authenticate(plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")) is None
    assert store.authenticate("") is None
    with pytest.raises(IdentityError, match="future"):
        store.create("alpha", expires_at=utcnow() - timedelta(seconds=1))


@pytest.mark.parametrize("team", ["", "a b", "x'; DROP TABLE api_keys; --", "a" * 200])
def test_bad_names_are_refused(store: KeyStore, team: str) -> None:
    with pytest.raises(IdentityError, match="team must be"):
        store.create(team)
    assert store.list() == []


def test_teams_are_reused(store: KeyStore) -> None:
    store.create("alpha")
    store.create("alpha")
    store.create("beta")
    assert sorted(k.team for k in store.list()) == ["alpha", "alpha", "beta"]
    assert [k.team for k in store.list(team="beta")] == ["beta"]
