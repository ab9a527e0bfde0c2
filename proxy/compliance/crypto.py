"""Envelope encryption for transcripts: AES-256-GCM data keys per tenant (or per data subject),
wrapped by a key-encryption key (KEK) from a file or an environment variable.

A transcript is compressed, then encrypted with its tenant's (or subject's) current data key; the
AAD binds tenant, request_id and timestamp, so a ciphertext moved to another row fails to open.
Deleting a data key crypto-shreds everything sealed under it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, func, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from proxy.db import DataKey, utcnow

log = logging.getLogger(__name__)
NONCE_BYTES = 12
# The current key for a tenant is cached this long per process: a rotation or an erasure reaches
# other processes' new transcripts within it. Reading never uses the cache.
CURRENT_KEY_SECONDS = 30.0
# Current keys cached per process at most (tenants and end users together); the least recently used go.
CURRENT_KEY_CACHE = 10_000
SUBJECT_QUOTA_WINDOW_S = 3600.0


# clickhouse-connect returns String columns as text; ciphertext must come back as raw bytes.
BINARY = {"nonce": "bytes", "ciphertext": "bytes"}


class CryptoError(Exception):
    """A key is missing, destroyed or wrong, or a ciphertext does not match its row."""


def load_kek(spec: str, environ: Mapping[str, str] | None = None) -> bytes:
    """The 32-byte KEK from `auto:PATH` (created on first use), `file:PATH` or `env:VARIABLE` (base64)."""
    environ = os.environ if environ is None else environ
    if spec.startswith("env:"):
        value = environ.get(spec[4:])
        if not value:
            raise CryptoError(f"environment variable {spec[4:]} (the key-encryption key) is not set")
        return _decode_kek(value, spec)
    if spec.startswith("auto:"):
        path = Path(spec[5:])
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
            log.warning(
                "created a key-encryption key at %s: back it up; without it transcripts are lost", path
            )
        return _decode_kek(path.read_text(), str(path))
    if spec.startswith("file:"):
        try:
            return _decode_kek(Path(spec[5:]).read_text(), spec[5:])
        except OSError as exc:
            raise CryptoError(f"cannot read the key-encryption key {spec[5:]}: {exc.strerror}") from None
    raise CryptoError("the key-encryption key must be auto:PATH, file:PATH or env:VARIABLE")


def _decode_kek(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise CryptoError(f"{where}: the key-encryption key must be base64") from None
    if len(key) != 32:
        raise CryptoError(f"{where}: the key-encryption key must be 32 bytes (256 bits)")
    return key


def new_kek_text() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def deflate(data: bytes) -> bytes:
    """zlib at level 1 with a window and memory sized to `data`: `zlib.compress` sets up 256 KiB of
    state for every call, about 30 µs, ten times the work for a transcript of a few hundred bytes
    (issue 16). The stream header records the window, so `zlib.decompress` reads either."""
    window = min(15, max(9, (len(data) - 1).bit_length()))
    compressor = zlib.compressobj(1, zlib.DEFLATED, window, min(8, window - 7))
    return compressor.compress(data) + compressor.flush()


def transcript_aad(tenant: str, request_id: uuid.UUID | str, ts: datetime) -> bytes:
    # Integer milliseconds, as ClickHouse stores them (DateTime64(3)); float maths would drift by one.
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    millis = int(ts.replace(microsecond=0).timestamp()) * 1000 + ts.microsecond // 1000
    return f"warden-transcript-v1|{tenant}|{request_id}|{millis}".encode()


@dataclass(frozen=True, slots=True)
class Sealed:
    key_id: str
    nonce: bytes
    ciphertext: bytes


class KeyRing:
    """Data keys: created on demand, rotated, destroyed; stored wrapped in the metadata database."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        kek: bytes,
        *,
        new_subjects_per_hour: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._kek = AESGCM(kek)
        self._subject_key = hmac.new(kek, b"warden-subject-id-v1", hashlib.sha256).digest()
        self._cache_key = hmac.new(kek, b"warden-cache-key-v1", hashlib.sha256).digest()
        self._current: OrderedDict[tuple[str, str], tuple[float, str, AESGCM]] = OrderedDict()
        self._lock = threading.Lock()
        self._clock = clock
        # Each distinct `user` value would create a data key that lives in the database for good: a
        # caller sending random ids could grow it without bound. Per API key: the start of its window
        # and the new subject keys made in it.
        self._quota = new_subjects_per_hour
        self._made: dict[str, tuple[float, int]] = {}

    def subject_hash(self, tenant: str, subject: str) -> str:
        """A stable pseudonym for an end-user id: erasable by id, meaningless without the KEK."""
        return hmac.new(self._subject_key, f"{tenant}\x00{subject}".encode(), hashlib.sha256).hexdigest()[:32]

    def cache_key(self, tenant: str, material: bytes) -> str:
        """The response cache's key for a request: a keyed hash, meaningless without the KEK, never the
        request's text; the tenant is in it, so no two tenants ever share an entry."""
        mac = hmac.new(self._cache_key, tenant.encode() + b"\x00", hashlib.sha256)
        mac.update(material)
        return mac.hexdigest()

    # -- sealing -------------------------------------------------------------------------------

    def seal_bytes(self, tenant: str, data: bytes, aad: bytes) -> bytes:
        """`data` compressed and encrypted under the tenant's current key, as one opaque value (key id,
        nonce, ciphertext): what the response cache stores. Shredding the tenant's keys unseals nothing."""
        key_id, aead = self._current_key(tenant, "")
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = aead.encrypt(nonce, deflate(data), aad)
        return key_id.encode() + b"|" + nonce + sealed

    def open_bytes(self, tenant: str, blob: bytes, aad: bytes) -> bytes:
        """What `seal_bytes` sealed. Raises CryptoError for a destroyed key or a value moved or altered."""
        key_id_raw, _, rest = blob.partition(b"|")
        key_id = key_id_raw.decode("ascii", "replace")
        if len(rest) <= NONCE_BYTES:
            raise CryptoError("a sealed value is cut short")
        with self._lock:
            cached = self._current.get((tenant, ""))
        # The tenant's current key, cached: no database read on a cache hit in the common case.
        aead = cached[2] if cached is not None and cached[1] == key_id else self._key_by_id(key_id)
        try:
            return zlib.decompress(aead.decrypt(rest[:NONCE_BYTES], rest[NONCE_BYTES:], aad))
        except (InvalidTag, zlib.error):
            raise CryptoError("a sealed value does not match its key (tampered or moved)") from None

    def seal(
        self,
        tenant: str,
        subject_hash: str,
        request_id: uuid.UUID,
        ts: datetime,
        content: Any,
        *,
        caller: str = "",
    ) -> Sealed:
        """Encrypt `content` under the subject's current key (the tenant's when `subject_hash` is empty,
        or when `caller`, an API key id, has made its quota of new subject keys this hour)."""
        key_id, aead = self._current_key(tenant, subject_hash, caller)
        nonce = secrets.token_bytes(NONCE_BYTES)
        plaintext = deflate(json.dumps(content, separators=(",", ":")).encode())
        return Sealed(key_id, nonce, aead.encrypt(nonce, plaintext, transcript_aad(tenant, request_id, ts)))

    def open(self, tenant: str, request_id: uuid.UUID | str, ts: datetime, sealed: Sealed) -> Any:
        aead = self._key_by_id(sealed.key_id)
        try:
            plaintext = aead.decrypt(sealed.nonce, sealed.ciphertext, transcript_aad(tenant, request_id, ts))
        except InvalidTag:
            raise CryptoError("the transcript does not match its row (tampered or moved)") from None
        return json.loads(zlib.decompress(plaintext))

    # -- key management ------------------------------------------------------------------------

    def rotate(self, tenant: str) -> str:
        """A new tenant key version; older versions still decrypt what they sealed."""
        with self._sessions.begin() as session:
            latest = session.execute(
                select(func.max(DataKey.version)).where(DataKey.tenant == tenant, DataKey.subject == "")
            ).scalar_one()
            key_id = self._create(session, tenant, "", (latest or 0) + 1)
        with self._lock:
            self._current.pop((tenant, ""), None)
        return key_id

    def shred(self, tenant: str, subject_hash: str | None = None) -> int:
        """Destroy a subject's keys (or every key of the tenant); return how many were destroyed."""
        with self._sessions.begin() as session:
            query = delete(DataKey).where(DataKey.tenant == tenant)
            if subject_hash is not None:
                query = query.where(DataKey.subject == subject_hash)
            # A DELETE without RETURNING gives a CursorResult; Session.execute is typed as the base Result
            # (SQLAlchemy's changelog for 2.0.44 advises this cast to read rowcount).
            result = cast("CursorResult[()]", session.execute(query))
            count = result.rowcount or 0
        with self._lock:
            for key in [k for k in self._current if k[0] == tenant and subject_hash in (None, k[1])]:
                del self._current[key]
        return count

    def status(self) -> list[dict[str, Any]]:
        with self._sessions() as session:
            rows = session.execute(
                select(DataKey.tenant, func.count(), func.max(DataKey.version))
                .where(DataKey.subject == "")
                .group_by(DataKey.tenant)
                .order_by(DataKey.tenant)
            ).all()
            subjects = dict(
                session.execute(
                    select(DataKey.tenant, func.count()).where(DataKey.subject != "").group_by(DataKey.tenant)
                ).all()
            )
        return [
            {"tenant": t, "tenant_key_versions": n, "current_version": v, "subject_keys": subjects.get(t, 0)}
            for t, n, v in rows
        ]

    def _current_key(self, tenant: str, subject_hash: str, caller: str = "") -> tuple[str, AESGCM]:
        now = self._clock()
        with self._lock:
            cached = self._current.get((tenant, subject_hash))
            if cached is not None and cached[0] > now:
                self._current.move_to_end((tenant, subject_hash))
                return cached[1], cached[2]
        charged = False  # one new subject is one unit of quota, however many creation races it loses
        for _ in range(3):
            try:
                found = self._latest(tenant, subject_hash)
                if found is None and subject_hash and caller and not charged:
                    if not self._may_create(caller, now):
                        log.warning(
                            "API key %s used its hourly quota of new subject keys: sealing under the "
                            "tenant key",
                            caller,
                        )
                        return self._current_key(tenant, "")
                    charged = True
                key_id, aead = found or self._create_first(tenant, subject_hash)
                break
            except IntegrityError:
                continue  # another process created the first key at the same moment: read theirs
        else:
            raise CryptoError(f"could not create a data key for tenant {tenant!r}")
        with self._lock:
            self._current[(tenant, subject_hash)] = (now + CURRENT_KEY_SECONDS, key_id, aead)
            self._current.move_to_end((tenant, subject_hash))
            while len(self._current) > CURRENT_KEY_CACHE:
                self._current.popitem(last=False)
        return key_id, aead

    def _may_create(self, caller: str, now: float) -> bool:
        """Count one new subject key against `caller`'s hour; False once its quota is used."""
        with self._lock:
            start, made = self._made.get(caller, (now, 0))
            if now - start >= SUBJECT_QUOTA_WINDOW_S:
                start, made = now, 0
            if made >= self._quota:
                return False
            self._made[caller] = (start, made + 1)
            if len(self._made) > CURRENT_KEY_CACHE:  # keys long idle: their windows have passed
                for stale in [k for k, (t, _) in self._made.items() if now - t >= SUBJECT_QUOTA_WINDOW_S]:
                    del self._made[stale]
            return True

    def _latest(self, tenant: str, subject_hash: str) -> tuple[str, AESGCM] | None:
        with self._sessions() as session:
            row = session.execute(
                select(DataKey)
                .where(DataKey.tenant == tenant, DataKey.subject == subject_hash)
                .order_by(DataKey.version.desc())
                .limit(1)
            ).scalar_one_or_none()
            return None if row is None else (row.id, AESGCM(self._unwrap(row)))

    def _create_first(self, tenant: str, subject_hash: str) -> tuple[str, AESGCM]:
        with self._sessions.begin() as session:
            row = session.get(DataKey, self._create(session, tenant, subject_hash, 1))
            assert row is not None
            return row.id, AESGCM(self._unwrap(row))

    def _key_by_id(self, key_id: str) -> AESGCM:
        with self._sessions() as session:
            row = session.get(DataKey, key_id)
            if row is None:
                raise CryptoError(f"data key {key_id} was destroyed (erased) or never existed")
            return AESGCM(self._unwrap(row))

    def _create(self, session: Any, tenant: str, subject: str, version: int) -> str:
        key_id = "dek_" + uuid.uuid4().hex[:16]
        nonce = secrets.token_bytes(NONCE_BYTES)
        wrapped = self._kek.encrypt(nonce, AESGCM.generate_key(256), _wrap_aad(key_id, tenant, subject))
        session.add(
            DataKey(
                id=key_id,
                tenant=tenant,
                subject=subject,
                version=version,
                wrapped=base64.b64encode(nonce + wrapped).decode(),
                created_at=utcnow(),
            )
        )
        session.flush()
        return key_id

    def _unwrap(self, row: DataKey) -> bytes:
        raw = base64.b64decode(row.wrapped)
        try:
            return self._kek.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _wrap_aad(row.id, row.tenant, row.subject)
            )
        except InvalidTag:
            raise CryptoError(f"data key {row.id} does not open with this key-encryption key") from None


def _wrap_aad(key_id: str, tenant: str, subject: str) -> bytes:
    return f"warden-dek-v1|{key_id}|{tenant}|{subject}".encode()
