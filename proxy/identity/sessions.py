"""Browser sessions for people: server-side records, rotated at login, idle and absolute timeouts,
a CSRF token per session, and login throttling that works across processes (it lives in the DB)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from proxy.db import Clock, LoginFailure, User, WebSession, as_utc, utcnow

COOKIE = "warden_session"
LOGIN_CSRF_COOKIE = "warden_login_csrf"
# Refreshing last_seen on every request would turn every page view into a write.
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle: timedelta
    absolute: timedelta
    max_failures: int
    lockout: timedelta


@dataclass(frozen=True, slots=True)
class ActiveSession:
    user_id: str
    csrf_token: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    def __init__(
        self, sessions: sessionmaker[Session], policy: SessionPolicy, *, clock: Clock = utcnow
    ) -> None:
        self._sessions = sessions
        self._now = clock
        self.policy = policy

    def start(self, user_id: str, ip: str, replacing: str | None = None) -> tuple[str, str]:
        """A new session (token, csrf token); the one it replaces, if any, ends: ids rotate at login."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self._now()
        with self._sessions.begin() as session:
            if replacing:
                session.execute(delete(WebSession).where(WebSession.token_hash == _digest(replacing)))
            session.add(
                WebSession(
                    token_hash=_digest(token),
                    user_id=user_id,
                    csrf_token=csrf,
                    created_at=now,
                    last_seen_at=now,
                    ip=ip[:64],
                )
            )
            user = session.get(User, user_id)
            if user is not None:
                user.last_login_at = now
        return token, csrf

    def resolve(self, token: str) -> ActiveSession | None:
        if not token or len(token) > 128:
            return None
        now = self._now()
        with self._sessions() as session:
            row = session.get(WebSession, _digest(token))
            if row is None:
                return None
            created, seen = as_utc(row.created_at), as_utc(row.last_seen_at)
            assert created is not None and seen is not None
            if now - created > self.policy.absolute or now - seen > self.policy.idle:
                session.delete(row)
                session.commit()
                return None
            if now - seen > TOUCH_EVERY:
                row.last_seen_at = now
                session.commit()
            return ActiveSession(row.user_id, row.csrf_token)

    def end(self, token: str) -> None:
        with self._sessions.begin() as session:
            session.execute(delete(WebSession).where(WebSession.token_hash == _digest(token)))

    # -- throttling ----------------------------------------------------------------------------

    def locked_out(self, username: str) -> bool:
        since = self._now() - self.policy.lockout
        with self._sessions() as session:
            failures = session.execute(
                select(func.count())
                .select_from(LoginFailure)
                .where(LoginFailure.username == username[:128], LoginFailure.at >= since)
            ).scalar_one()
        return failures >= self.policy.max_failures

    def failed(self, username: str, ip: str) -> None:
        with self._sessions.begin() as session:
            session.add(LoginFailure(username=username[:128], ip=ip[:64], at=self._now()))
            # Old failures only matter inside the lockout window.
            session.execute(
                delete(LoginFailure).where(LoginFailure.at < self._now() - 2 * self.policy.lockout)
            )

    def succeeded(self, username: str) -> None:
        with self._sessions.begin() as session:
            session.execute(delete(LoginFailure).where(LoginFailure.username == username[:128]))
