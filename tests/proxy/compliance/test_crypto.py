"""Data keys cannot be grown without bound by a caller: new per-user keys are limited per API key and hour,
and the per-process cache of current keys is bounded."""

from __future__ import annotations

import random
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import openai
import pytest
from sqlalchemy import func, select

from proxy.compliance import crypto
from proxy.db import DataKey
from proxy.upstreams.fake import FakeUpstream
from tests.support import LiveWarden, make_settings


@pytest.fixture
def live(tmp_path: Path, fake_upstream: FakeUpstream) -> Iterator[LiveWarden]:
    warden = LiveWarden(
        make_settings(tmp_path, fake_upstream.base_url, transcripts={"new_subject_keys_per_hour": 3})
    )
    yield warden
    warden.stop()


def subject_keys(live: LiveWarden) -> int:
    with live.services.db() as session:
        return int(session.execute(select(func.count()).where(DataKey.subject != "")).scalar_one())


def test_random_user_ids_make_at_most_the_quota_of_keys(live: LiveWarden) -> None:
    api = openai.OpenAI(base_url=live.base_url, api_key=live.create_key("alpha"), max_retries=0)
    for i in range(6):
        api.chat.completions.create(
            model="gpt-fake", messages=[{"role": "user", "content": f"hi {i}"}], user=f"user-{uuid.uuid4()}"
        )
    assert live.services.sink.flush(20)
    assert subject_keys(live) == 3
    # Past the quota, transcripts are sealed under the tenant key: still encrypted, still readable.
    rows = live.rows("SELECT request_id, ts, key_id, nonce, ciphertext, subject_hash FROM transcripts")
    assert len(rows) == 6 and all(r[5] for r in rows)
    tenant_keyed = [r for r in rows if r[2] not in _subject_key_ids(live)]
    assert len(tenant_keyed) == 3
    another = openai.OpenAI(base_url=live.base_url, api_key=live.create_key("alpha"), max_retries=0)
    another.chat.completions.create(
        model="gpt-fake", messages=[{"role": "user", "content": "hi"}], user="someone-new"
    )
    assert subject_keys(live) == 4  # the quota is per API key


def _subject_key_ids(live: LiveWarden) -> set[str]:
    with live.services.db() as session:
        return set(session.execute(select(DataKey.id).where(DataKey.subject != "")).scalars())


def test_the_current_key_cache_is_bounded(live: LiveWarden, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crypto, "CURRENT_KEY_CACHE", 4)
    keyring = live.services.keyring
    now = datetime.now(UTC)
    for i in range(10):
        sealed = keyring.seal("default", f"subject{i:02d}", uuid.uuid4(), now, {"n": i}, caller=f"key{i}")
        assert sealed.key_id
    assert len(keyring._current) <= 4


def test_a_lost_creation_race_costs_one_unit_of_quota(
    live: LiveWarden, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process creating the same subject's first key at the same moment makes this one retry:
    the retry must not count the subject against the caller's quota a second time."""
    from sqlalchemy.exc import IntegrityError

    keyring = live.services.keyring
    create = keyring._create_first
    raced: list[str] = []

    def lose_once(tenant: str, subject_hash: str) -> tuple[str, object]:
        if subject_hash not in raced:
            raced.append(subject_hash)
            raise IntegrityError("INSERT", {}, Exception("duplicate key"))
        return create(tenant, subject_hash)

    monkeypatch.setattr(keyring, "_create_first", lose_once)
    now = datetime.now(UTC)
    for i in range(3):
        keyring.seal("default", f"racer{i}", uuid.uuid4(), now, {"n": i}, caller="key-race")
    assert subject_keys(live) == 3, "three subjects fit a quota of three, races or not"


@pytest.mark.parametrize("size", [0, 1, 200, 511, 512, 4_000, 70_000, 1_000_000])
def test_deflate_is_read_by_plain_zlib_and_still_compresses(size: int) -> None:
    # Sealed values written before the window was sized to the data, and after, open the same way.
    words = [b"hello", b"world", b"transcript", b"assistant", b"{", b'"role":', b"user"]
    rng = random.Random(size)
    data = b" ".join(rng.choice(words) for _ in range(size))[:size]
    packed = crypto.deflate(data)
    assert zlib.decompress(packed) == data
    if size >= 4_000:
        assert len(packed) < len(data) / 3
