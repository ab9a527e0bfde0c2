"""People, teams and role bindings. Every change is written with its audit record, in one transaction.

Authorization is the caller's job (the admin API checks `analytics.access` before calling here; the
CLI is the machine's operator); this module validates input and keeps the records.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from analytics.access import ROLES, Actor, Binding
from proxy.db import RoleBinding, Team, Tenant, User, WebSession, as_utc, utcnow
from proxy.identity import audit

DEFAULT_TENANT = "default"
MIN_PASSWORD = 12
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_hasher = PasswordHasher()
# Verifying against this when the user does not exist keeps the timing of both failures alike.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class IdentityError(ValueError):
    """Bad input or a conflict (unknown user, duplicate team); the message is safe to show."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: str
    username: str
    tenant: str
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None
    bindings: tuple[Binding, ...]


@dataclass(frozen=True, slots=True)
class Change:
    """Who acts and from where, for the audit record."""

    actor: str
    tenant: str
    ip: str = ""

    def record(
        self,
        session: Session,
        tenant: str,
        action: str,
        target: str,
        *,
        before: Any = None,
        after: Any = None,
    ) -> int:
        """This change's record in the hash-chained audit log, inside the caller's transaction (so the
        change and its record commit together); returns its sequence number."""
        return audit.append(
            session,
            tenant=tenant,
            actor=self.actor,
            action=action,
            target=target,
            ip=self.ip,
            before=before,
            after=after,
        )


def check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise IdentityError(f"{kind} must be 1-128 characters of letters, digits, '.', '_' or '-'")
    return value


def check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= 1024:
        raise IdentityError(f"password must be {MIN_PASSWORD} to 1024 characters")
    return password


def sign_in_name(text: str) -> tuple[str, str]:
    """The (username, tenant) a sign-in form names: `name@tenant`, or a bare name in the default tenant.

    Usernames are unique per tenant, so the tenant is part of who signs in. Neither part may hold an
    "@", so anything else names no account (and fails like a wrong password)."""
    name, _, tenant = text.partition("@")
    return name, tenant if _ else DEFAULT_TENANT


def get_or_create_tenant(session: Session, name: str) -> Tenant:
    row = session.execute(select(Tenant).where(Tenant.name == name)).scalar_one_or_none()
    if row is None:
        # Checked names also keep every tenant apart from the audit log's system log ("").
        check_name("tenant", name)
        row = Tenant(id=uuid.uuid4().hex, name=name, created_at=utcnow())
        session.add(row)
        session.flush()
    return row


def find_team(session: Session, tenant: Tenant, name: str) -> Team | None:
    return session.execute(
        select(Team).where(Team.tenant_id == tenant.id, Team.name == name)
    ).scalar_one_or_none()


def get_or_create_team(session: Session, tenant: Tenant, name: str) -> Team:
    row = find_team(session, tenant, name)
    if row is None:
        row = Team(id=uuid.uuid4().hex, tenant_id=tenant.id, name=name, created_at=utcnow())
        session.add(row)
        session.flush()
    return row


class Directory:
    """Users, teams and bindings of every tenant."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    # -- teams ---------------------------------------------------------------------------------

    def create_team(self, name: str, change: Change) -> None:
        check_name("team", name)
        with self.sessions.begin() as session:
            tenant = get_or_create_tenant(session, change.tenant)
            if find_team(session, tenant, name) is not None:
                raise IdentityError(f"team {name!r} already exists", 409)
            get_or_create_team(session, tenant, name)
            change.record(
                session,
                change.tenant,
                "team.create",
                f"team:{name}",
                after={"name": name},
            )

    def teams(self, tenant: str) -> list[str]:
        with self.sessions() as session:
            return list(
                session.execute(
                    select(Team.name)
                    .join(Tenant, Team.tenant_id == Tenant.id)
                    .where(Tenant.name == tenant)
                    .order_by(Team.name)
                ).scalars()
            )

    # -- users ---------------------------------------------------------------------------------

    def create_user(
        self, username: str, password: str, change: Change, bindings: tuple[Binding, ...] = ()
    ) -> UserInfo:
        check_name("username", username)
        check_password(password)
        with self.sessions.begin() as session:
            tenant = get_or_create_tenant(session, change.tenant)
            # Unique per tenant only: a global check would tell one tenant's admin which names
            # exist in the others (and let one tenant take names from all of them).
            taken = select(User.id).where(User.tenant_id == tenant.id, User.username == username)
            if session.execute(taken).first():
                raise IdentityError(f"user {username!r} already exists", 409)
            user = User(
                id=uuid.uuid4().hex,
                tenant_id=tenant.id,
                username=username,
                password_hash=_hasher.hash(password),
                disabled=False,
                created_at=utcnow(),
            )
            session.add(user)
            session.flush()
            for binding in bindings:
                self._bind(session, tenant, user, binding)
            change.record(
                session,
                change.tenant,
                "user.create",
                f"user:{username}",
                after={"username": username, "roles": _describe(bindings)},
            )
        return self.user(username, change.tenant)

    def users(self, tenant: str) -> list[UserInfo]:
        with self.sessions() as session:
            rows = (
                session.execute(
                    select(User)
                    .join(Tenant, User.tenant_id == Tenant.id)
                    .where(Tenant.name == tenant)
                    .order_by(User.username)
                )
                .scalars()
                .all()
            )
            return [self._info(session, row, tenant) for row in rows]

    def user(self, username: str, tenant: str) -> UserInfo:
        """The user, or 404 when absent or in another tenant (which must not be distinguishable)."""
        with self.sessions() as session:
            row = self._find_user(session, username, tenant)
            return self._info(session, row, tenant)

    def set_disabled(self, username: str, disabled: bool, change: Change) -> UserInfo:
        with self.sessions.begin() as session:
            user = self._find_user(session, username, change.tenant)
            before = user.disabled
            user.disabled = disabled
            if disabled:
                session.query(WebSession).filter(WebSession.user_id == user.id).delete()
            change.record(
                session,
                change.tenant,
                "user.disable" if disabled else "user.enable",
                f"user:{username}",
                before={"disabled": before},
                after={"disabled": disabled},
            )
        return self.user(username, change.tenant)

    # -- bindings ------------------------------------------------------------------------------

    def grant(self, username: str, binding: Binding, change: Change) -> UserInfo:
        with self.sessions.begin() as session:
            user = self._find_user(session, username, change.tenant)
            tenant = session.get(Tenant, user.tenant_id)
            assert tenant is not None
            before = _describe(self._bindings(session, user))
            if binding in self._bindings(session, user):
                raise IdentityError(f"{username!r} already holds {_describe((binding,))[0]}", 409)
            self._bind(session, tenant, user, binding)
            change.record(
                session,
                change.tenant,
                "role.grant",
                f"user:{username}",
                before=before,
                after=_describe(self._bindings(session, user)),
            )
        return self.user(username, change.tenant)

    def revoke(self, username: str, binding: Binding, change: Change) -> UserInfo:
        with self.sessions.begin() as session:
            user = self._find_user(session, username, change.tenant)
            before = _describe(self._bindings(session, user))
            team_id = self._team_id(session, user, binding.team)
            row = session.execute(
                select(RoleBinding).where(
                    RoleBinding.user_id == user.id,
                    RoleBinding.role == binding.role,
                    RoleBinding.team_id.is_(None) if team_id is None else RoleBinding.team_id == team_id,
                )
            ).scalar_one_or_none()
            if row is None:
                raise IdentityError(f"{username!r} does not hold {_describe((binding,))[0]}", 404)
            session.delete(row)
            session.flush()
            change.record(
                session,
                change.tenant,
                "role.revoke",
                f"user:{username}",
                before=before,
                after=_describe(self._bindings(session, user)),
            )
        return self.user(username, change.tenant)

    # -- sign-in -------------------------------------------------------------------------------

    def check_password(self, username: str, tenant: str, password: str) -> User | None:
        """The tenant's enabled user whose password this is, else None (same cost whether or not the user
        exists)."""
        with self.sessions() as session:
            user = self._lookup(session, username, tenant)
        stored = user.password_hash if user is not None else _DUMMY_HASH
        try:
            _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if user is None or user.disabled:
            return None
        if _hasher.check_needs_rehash(stored):
            with self.sessions.begin() as session:
                row = session.get(User, user.id)
                if row is not None:
                    row.password_hash = _hasher.hash(password)
        return user

    def actor(self, user_id: str, via: str = "session") -> Actor | None:
        with self.sessions() as session:
            user = session.get(User, user_id)
            if user is None or user.disabled:
                return None
            tenant = session.get(Tenant, user.tenant_id)
            assert tenant is not None
            return Actor(user.id, user.username, tenant.name, self._bindings(session, user), via)

    def exists(self, username: str, tenant: str) -> bool:
        """Whether the tenant has this user (disabled or not): whose log a refused sign-in belongs in."""
        with self.sessions() as session:
            return self._lookup(session, username, tenant) is not None

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _lookup(session: Session, username: str, tenant: str) -> User | None:
        return session.execute(
            select(User)
            .join(Tenant, User.tenant_id == Tenant.id)
            .where(User.username == username, Tenant.name == tenant)
        ).scalar_one_or_none()

    def _find_user(self, session: Session, username: str, tenant: str) -> User:
        row = self._lookup(session, username, tenant)
        if row is None:
            raise IdentityError(f"no user {username!r}", 404)
        return row

    def _team_id(self, session: Session, user: User, team: str | None) -> str | None:
        if team is None:
            return None
        tenant = session.get(Tenant, user.tenant_id)
        assert tenant is not None
        row = find_team(session, tenant, team)
        if row is None:
            raise IdentityError(f"no team {team!r}", 404)
        return row.id

    def _bind(self, session: Session, tenant: Tenant, user: User, binding: Binding) -> None:
        if binding.role not in ROLES:
            raise IdentityError(f"unknown role {binding.role!r} (roles: {', '.join(ROLES)})")
        team_id = None
        if binding.team is not None:
            team = find_team(session, tenant, binding.team)
            if team is None:
                raise IdentityError(f"no team {binding.team!r}", 404)
            team_id = team.id
        session.add(
            RoleBinding(
                id=uuid.uuid4().hex, user_id=user.id, role=binding.role, team_id=team_id, created_at=utcnow()
            )
        )
        session.flush()

    @staticmethod
    def _bindings(session: Session, user: User) -> tuple[Binding, ...]:
        rows = session.execute(
            select(RoleBinding.role, Team.name)
            .outerjoin(Team, RoleBinding.team_id == Team.id)
            .where(RoleBinding.user_id == user.id)
            .order_by(RoleBinding.role, Team.name)
        ).all()
        return tuple(Binding(role, team) for role, team in rows)

    def _info(self, session: Session, row: User, tenant: str) -> UserInfo:
        return UserInfo(
            row.id,
            row.username,
            tenant,
            row.disabled,
            as_utc(row.created_at),
            as_utc(row.last_login_at),
            self._bindings(session, row),
        )


def _describe(bindings: Any) -> list[str]:
    return [f"{b.role}@{b.team}" if b.team else f"{b.role}@tenant" for b in bindings]
