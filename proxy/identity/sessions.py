"""Browser sessions for people: server-side records, rotated at login, idle and absolute timeouts,
a CSRF token per session, and login throttling that works across processes (it lives in the DB)."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
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

    def attempt(self, username: str, ip: str) -> bool:
        """Record a sign-in attempt for `username` from `ip`; False when that pair is locked out.

        The attempt is written before it is counted, so attempts racing in parallel each see the others:
        no more than `max_failures` get to a password check. A success removes them (`succeeded`).
        Locking per address keeps anyone elsewhere from locking a user out."""
        now = self._now()
        with self._sessions.begin() as session:
            session.add(LoginFailure(username=username[:128], ip=ip[:64], at=now))
            # Old failures only matter inside the lockout window.
            session.execute(delete(LoginFailure).where(LoginFailure.at < now - 2 * self.policy.lockout))
        with self._sessions() as session:
            attempts = session.execute(
                select(func.count())
                .select_from(LoginFailure)
                .where(
                    LoginFailure.username == username[:128],
                    LoginFailure.ip == ip[:64],
                    LoginFailure.at >= now - self.policy.lockout,
                )
            ).scalar_one()
        return bool(attempts <= self.policy.max_failures)

    def succeeded(self, username: str, ip: str) -> None:
        with self._sessions.begin() as session:
            session.execute(
                delete(LoginFailure).where(
                    LoginFailure.username == username[:128], LoginFailure.ip == ip[:64]
                )
            )


class LoginGate:
    """Per-process limits in front of sign-in, checked before any argon2 hash (64 MiB each) or audit write:
    attempts per address per minute, and password hashes running at once. Refusals are audited one by one
    up to `AUDITED` of each (address, reason) a minute; the rest become one record with their count."""

    WINDOW_S = 60.0
    AUDITED = 5

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._attempts: dict[str, tuple[float, int]] = {}
        self._refusals: dict[tuple[str, str], tuple[float, int]] = {}
        self.hashing = threading.BoundedSemaphore(2)

    def admit(self, ip: str) -> bool:
        now = self._clock()
        with self._lock:
            start, count = self._attempts.get(ip, (now, 0))
            if now - start >= self.WINDOW_S:
                start, count = now, 0
            self._attempts[ip] = (start, count + 1)
            if len(self._attempts) > 100_000:
                self._attempts = {k: v for k, v in self._attempts.items() if now - v[0] < self.WINDOW_S}
            return count < self._per_minute

    def refusal(self, ip: str, reason: str) -> tuple[bool, list[tuple[str, str, int]]]:
        """Whether to audit this refusal now, and the (address, reason, count) of closed windows whose
        further refusals were held back and now go to the log as one record each."""
        now = self._clock()
        with self._lock:
            closed = [
                (k[0], k[1], n - self.AUDITED)
                for k, (t, n) in self._refusals.items()
                if now - t >= self.WINDOW_S and n > self.AUDITED
            ]
            self._refusals = {k: v for k, v in self._refusals.items() if now - v[0] < self.WINDOW_S}
            start, count = self._refusals.get((ip, reason), (now, 0))
            self._refusals[(ip, reason)] = (start, count + 1)
            return count < self.AUDITED, closed
