"""The admin audit log: append-only, hash-chained rows in the SQL metadata database.

Kept in SQL rather than ClickHouse so an admin change and its audit record commit in one transaction:
there is no change without its record, and no record of a change that was rolled back. Each row's
hash covers its fields and the previous row's hash; `verify` recomputes the chain and compares the
tip with `audit_head`, so an edited, inserted or deleted row (the last ones included) is detected.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from proxy.db import AuditEntry, AuditHead, as_utc, utcnow

GENESIS = "0" * 64
# The installation's own log, in no tenant's view: refused sign-ins that name no account, floods from an
# address. Tenant names are checked at creation, so no tenant can be called this.
SYSTEM = ""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at: datetime
    tenant: str
    actor: str
    action: str
    target: str
    outcome: str
    ip: str
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    rows: int
    problem: str = ""
    seq: int | None = None


def append(
    session: Session,
    *,
    tenant: str,
    actor: str,
    action: str,
    target: str,
    outcome: str = "ok",
    ip: str = "",
    before: Any = None,
    after: Any = None,
) -> int:
    """Add one record inside the caller's transaction; returns its sequence number."""
    # Taking the head row's write lock first serialises concurrent appenders (SQLite and PostgreSQL).
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + 1))
    head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
    now = utcnow()
    entry = AuditEntry(
        seq=head.seq,
        at=now.replace(microsecond=now.microsecond // 1000 * 1000),  # survives every DB's precision
        tenant=tenant[:128],
        actor=actor[:256],
        action=action[:64],
        target=target[:256],
        outcome=outcome[:16],
        ip=ip[:64],
        before=_dump(before),
        after=_dump(after),
        prev_hash=head.hash,
        hash="",
    )
    entry.hash = _hash(entry)
    head.hash = entry.hash
    session.add(entry)
    session.flush()
    return entry.seq


def record(sessions: sessionmaker[Session], **fields: Any) -> int:
    """Append in a transaction of its own (denied attempts, logins: nothing else to commit)."""
    with sessions.begin() as session:
        return append(session, **fields)


def entries(
    sessions: sessionmaker[Session],
    *,
    tenant: str | None = None,
    limit: int = 100,
    before_seq: int | None = None,
) -> list[AuditRecord]:
    with sessions() as session:
        query = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
        if tenant is not None:
            query = query.where(AuditEntry.tenant == tenant)
        if before_seq is not None:
            query = query.where(AuditEntry.seq < before_seq)
        return [
            AuditRecord(
                e.seq,
                as_utc(e.at),
                e.tenant,
                e.actor,
                e.action,
                e.target,
                e.outcome,
                e.ip,
                json.loads(e.before) if e.before else None,
                json.loads(e.after) if e.after else None,
            )
            for e in session.execute(query).scalars()
        ]


def verify(sessions: sessionmaker[Session], tenant: str | None = None) -> ChainReport:
    """Recompute the whole chain; report the first row that does not fit.

    The chain spans every tenant. With `tenant`, the report is for that tenant's people: it counts only
    its rows, and a broken row of another tenant is reported as such, without its number."""
    previous, expected_seq, count, mine = GENESIS, 1, 0, 0

    def broken(entry: AuditEntry | None, seq: int, problem: str) -> ChainReport:
        if tenant is None or (entry is not None and entry.tenant == tenant):
            return ChainReport(False, count if tenant is None else mine, problem, seq)
        return ChainReport(False, mine, "the shared chain is broken at another tenant's row")

    with sessions() as session:
        for entry in session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars().yield_per(1000):
            if entry.seq != expected_seq:
                return broken(None, expected_seq, f"row {expected_seq} is missing")
            if entry.prev_hash != previous:
                return broken(entry, entry.seq, f"row {entry.seq} does not follow row {entry.seq - 1}")
            if _hash(entry) != entry.hash:
                return broken(entry, entry.seq, f"row {entry.seq} was modified")
            previous, expected_seq, count = entry.hash, expected_seq + 1, count + 1
            mine += tenant is not None and entry.tenant == tenant
        head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
    if head.seq != count or head.hash != previous:
        return broken(None, count + 1, f"the log ends at row {count} but {head.seq} were written")
    return ChainReport(True, count if tenant is None else mine)


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def _hash(entry: AuditEntry) -> str:
    at = as_utc(entry.at)
    material = json.dumps(
        [
            entry.seq,
            at.isoformat(timespec="milliseconds") if at else "",
            entry.tenant,
            entry.actor,
            entry.action,
            entry.target,
            entry.outcome,
            entry.ip,
            entry.before,
            entry.after,
            entry.prev_hash,
        ],
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode()).hexdigest()
