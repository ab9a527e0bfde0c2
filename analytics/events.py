"""The exchange event: the one row Warden writes per request (metrics only), and its sealed
transcript, with the compact record format the spool keeps on disk."""

from __future__ import annotations

import base64
import json
import operator
import uuid
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ExchangeEvent:
    """What one exchange leaves behind. Field order is the `requests` column order."""

    tenant: str
    team: str
    project: str
    api_key_id: str
    request_id: uuid.UUID
    ts: datetime
    route: str
    model: str
    upstream: str
    status: int
    error_class: str
    streamed: bool
    cache_hit: bool  # answered from Warden's response cache: nothing spent upstream
    latency_ms: float
    ttft_ms: float | None
    upstream_ms: float
    overhead_ms: float
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_micro_usd: int | None
    finish_reason: str
    choices: int
    subject_hash: str = ""
    retention_days: int = 0
    refusal: bool = False
    # What the policy did: its name@version, the decision, and findings grouped by (stage, kind,
    # action) as parallel arrays. Kinds and counts only: the matched values are never recorded.
    policy: str = ""
    decision: str = ""
    finding_stage: tuple[str, ...] = ()
    finding_kind: tuple[str, ...] = ()
    finding_action: tuple[str, ...] = ()
    finding_count: tuple[int, ...] = ()
    finding_score: tuple[float, ...] = ()
    # Answered by a self-hosted model (an `upstreams[].self_hosted` upstream); with no configured
    # price its cost is 0, known, not NULL.
    self_hosted: bool = False
    # Upstream calls this request took (failovers and connection retries included); 0 when none was
    # made (refused before routing, or no upstream could take it).
    attempts: int = 1
    # A cache hit: what the call would have cost (its cost is 0, nothing was spent).
    cost_saved_micro_usd: int = 0
    # A request that named a registry prompt: its name and the version rendered ("" and 0: none).
    prompt_name: str = ""
    prompt_version: int = 0
    # A request assigned to a running experiment: its name and the variant it got ("": none).
    experiment: str = ""
    variant: str = ""

    def as_row(self) -> tuple[object, ...]:
        # Not dataclasses.astuple: it deep-copies every field, and this runs once per request.
        return _event_row(self)


@dataclass(frozen=True, slots=True)
class TranscriptRow:
    """An encrypted transcript; Warden never hands plaintext to the analytics layer."""

    tenant: str
    team: str
    request_id: uuid.UUID
    ts: datetime
    subject_hash: str
    key_id: str
    nonce: bytes
    ciphertext: bytes
    retention_days: int

    def as_row(self) -> tuple[object, ...]:
        return _transcript_row(self)


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ExchangeEvent))
TRANSCRIPT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(TranscriptRow))
_REQUEST_ID, _TS = COLUMNS.index("request_id"), COLUMNS.index("ts")
_event_row = operator.attrgetter(*COLUMNS)
_transcript_row = operator.attrgetter(*TRANSCRIPT_COLUMNS)
_ROW_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def row_json(event: ExchangeEvent) -> bytes:
    """The event's `requests` row as one JSON array, the line ClickHouse reads in `JSONCompactEachRow`:
    the writer inserts these bytes as they are, so no row is converted again in Python (issue 16).
    The request id is its text and the time epoch seconds with microseconds, which ClickHouse reads
    into its DateTime64 exactly. Lone surrogates (a string an upstream sent as `\\ud800`) become `?`:
    ClickHouse would refuse the whole batch over them."""
    row = list(event.as_row())
    row[_REQUEST_ID] = str(event.request_id)
    row[_TS] = event.ts.timestamp()
    return _ROW_ENCODER.encode(row).encode("utf-8", "replace")


def encode(event: ExchangeEvent, transcript: TranscriptRow | None, row: bytes | None = None) -> bytes:
    """One spool record: JSON of both rows (the event's as `row_json` makes it, given or made here;
    the transcript's bytes as base64 and its time as epoch microseconds)."""
    sealed = b"null"
    if transcript is not None:
        sealed = json.dumps([_plain(v) for v in transcript.as_row()], separators=(",", ":")).encode()
    return b"[" + (row if row is not None else row_json(event)) + b"," + sealed + b"]"


def record_row(record: bytes) -> tuple[bytes, TranscriptRow | None]:
    """A spool record's `requests` line and transcript, whichever Warden version wrote it."""
    event, transcript = decode(record)
    return row_json(event), transcript


def decode(record: bytes) -> tuple[ExchangeEvent, TranscriptRow | None]:
    row, sealed = json.loads(record)
    # Not strict: records spooled by an older Warden lack the newest fields, which have defaults.
    values: dict[str, Any] = {name: _typed(name, value) for name, value in zip(COLUMNS, row, strict=False)}
    event = ExchangeEvent(**values)
    transcript = None
    if sealed is not None:
        sealed_values: dict[str, Any] = {
            name: _typed(name, value) for name, value in zip(TRANSCRIPT_COLUMNS, sealed, strict=True)
        }
        transcript = TranscriptRow(**sealed_values)
    return event, transcript


def _plain(value: object) -> object:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return int(value.timestamp() * 1_000_000)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def _typed(name: str, value: object) -> object:
    if name == "request_id":
        return uuid.UUID(str(value))
    if name == "ts":
        if isinstance(value, float):  # an event row: epoch seconds
            return datetime.fromtimestamp(value, UTC)
        # A transcript row, or an event row an older Warden spooled: epoch microseconds.
        return datetime.fromtimestamp(int(value) / 1_000_000, UTC)  # type: ignore[call-overload]
    if name in ("nonce", "ciphertext"):
        return base64.b64decode(str(value))
    if isinstance(value, list):  # the finding arrays: JSON has no tuples
        return tuple(value)
    return value
