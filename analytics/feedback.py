"""Feedback rows: scores and labels on requests, with their sealed comments, and the reads that join
them to requests. Comments reach this layer encrypted only; nothing here can read them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

SOURCES = ("end_user", "reviewer", "evaluator")


@dataclass(frozen=True, slots=True)
class ScoredRequest:
    """What feedback needs of the request it scores: who owns it and how long it is kept."""

    team: str
    subject_hash: str
    retention_days: int


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    """One feedback; field order is the `feedback` column order. Empty key_id: no comment."""

    tenant: str
    team: str
    feedback_id: uuid.UUID
    request_id: uuid.UUID
    ts: datetime
    score: float | None
    label: str
    source: str
    actor: str  # "key:<key id>" or "session:<username>": never a secret
    subject_hash: str
    key_id: str
    nonce: bytes
    ciphertext: bytes
    retention_days: int

    def as_row(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in FEEDBACK_COLUMNS)


FEEDBACK_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(FeedbackRow))


def scored_request(client: Any, tenant: str, request_id: uuid.UUID) -> ScoredRequest | None:
    """The tenant's request with this id, or None: another tenant's request is None too."""
    result = client.query(
        "SELECT team, subject_hash, retention_days FROM requests"
        " WHERE tenant = {tenant:String} AND request_id = {id:UUID} LIMIT 1",
        parameters={"tenant": tenant, "id": str(request_id)},
    )
    if not result.result_rows:
        return None
    team, subject_hash, days = result.result_rows[0]
    return ScoredRequest(str(team), str(subject_hash), int(days))


def insert(client: Any, row: FeedbackRow) -> None:
    client.insert("feedback", [row.as_row()], column_names=FEEDBACK_COLUMNS)
