"""The exchange event: the one row Warden writes per request, metrics only."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime


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
    cache_hit: bool
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

    def as_row(self) -> tuple:
        # Not dataclasses.astuple: it deep-copies every field, and this runs once per request.
        return tuple(getattr(self, name) for name in COLUMNS)


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ExchangeEvent))
