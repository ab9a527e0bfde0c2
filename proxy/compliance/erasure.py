"""Erasure: crypto-shred a data subject's (or a whole tenant's) keys, then delete their rows.

The key goes first: from that moment no copy of the ciphertext anywhere (a backup, an export, a
replica) can be decrypted by anyone; the row deletes then free the space.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from proxy.compliance.crypto import KeyRing
from proxy.compliance.exports import sweep
from proxy.identity import audit


@dataclass(frozen=True, slots=True)
class ErasureReport:
    keys_destroyed: int
    requests_deleted: int
    transcripts_deleted: int
    exports_deleted: int = 0


ROLLUPS = ("requests_hourly", "requests_hourly_team", "policy_hourly", "findings_hourly")


def erase(
    keyring: KeyRing,
    clickhouse: Any,
    db: sessionmaker[Session],
    *,
    tenant: str,
    subject: str | None,
    actor: str,
    ip: str = "",
    exports_dir: Path | None = None,
) -> ErasureReport:
    """Erase `subject` of `tenant` (or the whole tenant when subject is None); audited.

    Exports under `exports_dir` hold decrypted transcripts and rows that no key protects any more: every
    export of the tenant goes (which of them hold the subject is not recorded; they can be made again)."""
    subject_hash = keyring.subject_hash(tenant, subject) if subject is not None else None
    keys = keyring.shred(tenant, subject_hash)
    where = "tenant = {tenant:String}" + (" AND subject_hash = {subject:String}" if subject_hash else "")
    parameters = {"tenant": tenant, "subject": subject_hash or ""}
    counts = []
    for table in ("requests", "transcripts"):
        found = clickhouse.query(f"SELECT count() FROM {table} WHERE {where}", parameters=parameters)
        counts.append(found.result_rows[0][0])
        # A mutation rather than a lightweight delete: the bytes are rewritten without the rows.
        clickhouse.command(
            f"ALTER TABLE {table} DELETE WHERE {where} SETTINGS mutations_sync = 1", parameters=parameters
        )
    # Feedback carries its request's subject: scores, labels and sealed comments go with the requests.
    clickhouse.command(
        f"ALTER TABLE feedback DELETE WHERE {where} SETTINGS mutations_sync = 1", parameters=parameters
    )
    if subject_hash is None:
        # A whole tenant goes from the rollups too (they hold counts per team, model and key, no subject).
        for table in ROLLUPS:
            clickhouse.command(
                f"ALTER TABLE {table} DELETE WHERE {where} SETTINGS mutations_sync = 1", parameters=parameters
            )
    removed = sweep(exports_dir, keep=timedelta(0), tenant=tenant) if exports_dir is not None else []
    report = ErasureReport(keys, counts[0], counts[1], len(removed))
    audit.record(
        db,
        tenant=tenant,
        actor=actor,
        action="erase.subject" if subject else "erase.tenant",
        target=f"subject:{subject_hash}" if subject_hash else f"tenant:{tenant}",
        ip=ip,
        after={"keys_destroyed": keys, "requests": counts[0], "transcripts": counts[1], "exports": removed},
    )
    return report
