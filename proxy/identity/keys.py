"""Virtual API keys: created once and shown once, stored hashed, scoped to a team, revocable."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from proxy.db import ApiKey, Clock, Team, Tenant, as_utc, utcnow
from proxy.identity.directory import (
    DEFAULT_TENANT,
    Change,
    IdentityError,
    check_name,
    find_team,
    get_or_create_team,
    get_or_create_tenant,
)

KEY_PREFIX = "wdn-"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's tenant, team and project, and the models it may use."""

    tenant: str
    team: str
    project: str
    key_id: str
    key_name: str
    models: frozenset[str] | None  # None: every routed model
    cache: bool | None = None  # the response cache: None follows the policy, True on, False off

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    prefix: str
    name: str
    tenant: str
    team: str
    project: str
    models: tuple[str, ...] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    cache: bool | None = None


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


class KeyStore:
    """Key lifecycle and request-time lookup, with a short positive cache for the hot path."""

    def __init__(
        self, sessions: sessionmaker[Session], *, cache_seconds: float = 1.0, clock: Clock = utcnow
    ) -> None:
        self._sessions = sessions
        self._now = clock
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal, datetime | None]] = {}
        self._lock = threading.Lock()

    # -- admin ---------------------------------------------------------------------------------

    def create(
        self,
        team: str,
        *,
        name: str = "default",
        project: str = "",
        models: list[str] | None = None,
        expires_at: datetime | None = None,
        tenant: str = DEFAULT_TENANT,
        change: Change | None = None,
        create_team: bool = True,
        owner_user_id: str | None = None,
        cache: bool | None = None,
    ) -> tuple[KeyInfo, str]:
        """Create a key for `team` and return it with its plaintext, once.

        With `create_team` a missing team is created (the CLI's convenience); without it, an unknown
        team is an error (the admin API: creating teams needs its own permission).
        """
        check_name("team", team)
        check_name("key name", name)
        check_name("tenant", tenant)
        if project:
            check_name("project", project)
        if models is not None:
            for model in models:
                if not model or len(model) > 256:
                    raise IdentityError("model names must be 1-256 characters")
        if expires_at is not None and as_utc(expires_at) <= self._now():
            raise IdentityError("expiry must be in the future")
        plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._sessions.begin() as session:
            tenant_row = get_or_create_tenant(session, tenant)
            team_row = find_team(session, tenant_row, team)
            if team_row is None:
                if not create_team:
                    raise IdentityError(f"no team {team!r}")
                team_row = get_or_create_team(session, tenant_row, team)
            row = ApiKey(
                id="key_" + secrets.token_hex(6),
                tenant_id=tenant_row.id,
                team_id=team_row.id,
                name=name,
                project=project,
                key_hash=hash_key(plaintext),
                prefix=plaintext[: len(KEY_PREFIX) + 6],
                models=sorted(set(models)) if models is not None else None,
                cache=cache,
                created_at=self._now(),
                expires_at=expires_at,
                owner_user_id=owner_user_id,
            )
            session.add(row)
            session.flush()
            info = self._info(row, tenant_row.name, team_row.name)
            if change is not None:
                change.record(
                    session,
                    tenant,
                    "key.create",
                    f"key:{row.id}",
                    after={
                        "team": team,
                        "name": name,
                        "models": row.models,
                        "prefix": row.prefix,
                        **({"cache": cache} if cache is not None else {}),
                    },
                )
        return info, plaintext

    def list(self, *, team: str | None = None, include_revoked: bool = True) -> list[KeyInfo]:
        with self._sessions() as session:
            query = (
                select(ApiKey, Tenant.name, Team.name)
                .join(Tenant, ApiKey.tenant_id == Tenant.id)
                .join(Team, ApiKey.team_id == Team.id)
                .order_by(ApiKey.created_at)
            )
            if team is not None:
                query = query.where(Team.name == team)
            if not include_revoked:
                query = query.where(ApiKey.revoked_at.is_(None))
            return [self._info(row, tenant, team_name) for row, tenant, team_name in session.execute(query)]

    def get(self, key_id: str) -> KeyInfo | None:
        return next((k for k in self.list() if k.id == key_id), None)

    def revoke(self, key_id: str, change: Change | None = None) -> bool:
        """Revoke `key_id`; False if there is no such key. Immediate in this process."""
        with self._sessions.begin() as session:
            row = session.get(ApiKey, key_id)
            if row is None:
                return False
            already = row.revoked_at is not None
            if not already:
                row.revoked_at = self._now()
            key_hash = row.key_hash
            if change is not None:
                owner = session.get(Tenant, row.tenant_id)
                change.record(
                    session,
                    owner.name if owner is not None else change.tenant,
                    "key.revoke",
                    f"key:{key_id}",
                    before={"revoked": already},
                    after={"revoked": True},
                )
        with self._lock:
            self._cache.pop(key_hash, None)
        return True

    # -- request path --------------------------------------------------------------------------

    def authenticate(self, plaintext: str) -> Principal | None:
        """The principal for a presented key, or None if unknown, revoked or expired."""
        if not plaintext.startswith(KEY_PREFIX) or len(plaintext) > 128:
            return None
        digest = hash_key(plaintext)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            principal, expires_at = cached[1], cached[2]
        else:
            found = self._lookup(digest)
            if found is None:
                return None
            principal, expires_at = found
            if self._cache_seconds > 0:
                with self._lock:
                    if len(self._cache) > 100_000:
                        self._cache.clear()
                    self._cache[digest] = (now + self._cache_seconds, principal, expires_at)
        if expires_at is not None and expires_at <= self._now():
            return None
        return principal

    def _lookup(self, digest: str) -> tuple[Principal, datetime | None] | None:
        with self._sessions() as session:
            row = session.execute(
                select(ApiKey, Tenant.name, Team.name)
                .join(Tenant, ApiKey.tenant_id == Tenant.id)
                .join(Team, ApiKey.team_id == Team.id)
                .where(ApiKey.key_hash == digest)
            ).first()
        if row is None:
            return None
        key, tenant, team = row
        if key.revoked_at is not None:
            return None
        principal = Principal(
            tenant=tenant,
            team=team,
            project=key.project,
            key_id=key.id,
            key_name=key.name,
            models=frozenset(key.models) if key.models is not None else None,
            cache=key.cache,
        )
        return principal, as_utc(key.expires_at)

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _info(row: ApiKey, tenant: str, team: str) -> KeyInfo:
        return KeyInfo(
            id=row.id,
            prefix=row.prefix,
            name=row.name,
            tenant=tenant,
            team=team,
            project=row.project,
            models=tuple(row.models) if row.models is not None else None,
            created_at=as_utc(row.created_at),
            expires_at=as_utc(row.expires_at),
            revoked_at=as_utc(row.revoked_at),
            cache=row.cache,
        )
