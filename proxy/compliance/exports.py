"""Audit exports: requests, the admin audit log and (optionally) decrypted transcripts for a time range
and scope, as JSONL, CSV or Parquet, with a manifest (files, row counts, SHA-256) signed with Ed25519.
Also the fine-tuning export: transcripts as chat or prompt/completion JSONL."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from analytics.access import Scope
from proxy.compliance.crypto import BINARY, CryptoError, KeyRing, Sealed
from proxy.db import AuditEntry, as_utc
from proxy.formats import FORMATS as WIRE_FORMATS
from proxy.identity import audit

FORMATS = ("jsonl", "csv", "parquet")
Progress = Callable[[str, int], None]


class ExportError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ExportSpec:
    tenant: str
    since: datetime
    until: datetime
    format: str = "jsonl"
    scope: Scope | None = None  # None: the whole tenant
    transcripts: bool = False
    # The admin audit log is tenant-wide (other teams' key changes, transcript reads and their reasons):
    # only a caller with tenant-wide `audit:read` may have it, so it is left out unless asked for.
    audit_log: bool = False

    def check(self) -> None:
        if self.format not in FORMATS:
            raise ExportError(f"format must be one of {', '.join(FORMATS)}")
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ExportError("since and until need a timezone (e.g. 2026-11-01T00:00:00Z)")
        if self.since >= self.until:
            raise ExportError("since must be before until")


# -- signing keys ------------------------------------------------------------------------------


def signing_key(path: Path) -> Ed25519PrivateKey:
    """The export signing key at `path`, created (0600) with its `.pub` beside it on first use."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ExportError(f"{path} is not an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    path.with_suffix(".pub").write_bytes(public_pem(key.public_key()))
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


# -- export ------------------------------------------------------------------------------------


def export(
    spec: ExportSpec,
    out: Path,
    *,
    clickhouse: Any,
    db: sessionmaker[Session],
    keyring: KeyRing,
    key: Ed25519PrivateKey,
    actor: str,
    ip: str = "",
    reason: str = "",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the export into `out` (created, must be empty) and return the signed manifest; audited.

    The CLI and the admin API both come here, so an export leaves the same audit record either way.
    """
    spec.check()
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise ExportError(f"{out} is not empty")
    files = [_write(out, "requests", spec.format, _requests(clickhouse, spec), progress)]
    if spec.audit_log:
        files.append(_write(out, "audit_log", spec.format, _audit(db, spec), progress))
    if spec.transcripts:
        files.append(
            _write(out, "transcripts", spec.format, _transcripts(clickhouse, keyring, spec), progress)
        )
    files.append(_write(out, "feedback", spec.format, _feedback(clickhouse, keyring, spec), progress))
    manifest = {
        "warden_export": 1,
        "id": out.name,
        "tenant": spec.tenant,
        "since": spec.since.isoformat(),
        "until": spec.until.isoformat(),
        "teams": sorted(spec.scope.teams) if spec.scope and spec.scope.teams is not None else None,
        "format": spec.format,
        "created_at": datetime.now().astimezone().isoformat(),
        "files": files,
        "public_key": public_pem(key.public_key()).decode(),
    }
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    (out / "manifest.json").write_bytes(body)
    (out / "manifest.sig").write_text(base64.b64encode(key.sign(body)).decode() + "\n")
    audit.record(
        db,
        tenant=spec.tenant,
        actor=actor,
        action="export.create",
        target=f"export:{out.name}",
        ip=ip,
        after={
            "directory": str(out),
            "since": manifest["since"],
            "until": manifest["until"],
            "teams": manifest["teams"],
            "transcripts": spec.transcripts,
            "reason": reason or None,
            "files": [f["name"] for f in files],
        },
    )
    return manifest


# -- lifetime of exports kept for download -----------------------------------------------------


def sweep(exports_dir: Path, *, keep: timedelta, tenant: str | None = None) -> list[str]:
    """Delete the exports under `exports_dir` made more than `keep` ago (with `tenant`: every export of
    that tenant, whatever its age, as erasure needs); the ids deleted."""
    if not exports_dir.is_dir():
        return []
    cutoff = datetime.now(UTC) - keep
    removed = []
    for directory in exports_dir.glob("exp_*"):
        if not directory.is_dir():
            continue
        made, owner = _made_and_owner(directory)
        if (tenant is not None and owner == tenant) or (tenant is None and made < cutoff):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory.name)
    # A background export's status record goes with its export; on erasure, a running export of the
    # tenant goes too (it has no manifest yet, only its record says whose it is).
    for record in exports_dir.glob("exp_*.status.json"):
        export_id = record.name.removesuffix(".status.json")
        try:
            owner = json.loads(record.read_text()).get("tenant")
            made = datetime.fromtimestamp(record.stat().st_mtime, UTC)
        except (OSError, ValueError, AttributeError):
            owner, made = None, datetime.now(UTC)
        if tenant is not None and owner == tenant:
            shutil.rmtree(exports_dir / export_id, ignore_errors=True)
        elif not (export_id in removed or (tenant is None and made < cutoff)):
            continue
        record.unlink(missing_ok=True)
        if export_id not in removed:
            removed.append(export_id)
    return removed


def expired(directory: Path, keep: timedelta) -> bool:
    made, _ = _made_and_owner(directory)
    return made < datetime.now(UTC) - keep


def _made_and_owner(directory: Path) -> tuple[datetime, str | None]:
    """When an export was made and for which tenant; an unreadable manifest counts as made at the
    directory's last change, owned by nobody."""
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
        return datetime.fromisoformat(manifest["created_at"]).astimezone(UTC), str(manifest["tenant"])
    except (OSError, ValueError, KeyError, TypeError):
        try:
            return datetime.fromtimestamp(directory.stat().st_mtime, UTC), None
        except OSError:
            return datetime.now(UTC), None


def verify(directory: Path, public_key_pem: bytes | None = None) -> list[str]:
    """Problems found (empty: the signature holds and every file matches its hash and row count).

    With no public key given, the one in the manifest is used: that proves integrity only; pass the
    deployment's `.pub` file to prove origin too."""
    problems: list[str] = []
    try:
        body = (directory / "manifest.json").read_bytes()
        signature = base64.b64decode((directory / "manifest.sig").read_text().strip())
    except (OSError, ValueError) as exc:
        return [f"missing or unreadable manifest: {exc}"]
    manifest = json.loads(body)
    pem = public_key_pem or manifest.get("public_key", "").encode()
    try:
        key = serialization.load_pem_public_key(pem)
        assert isinstance(key, Ed25519PublicKey)
        key.verify(signature, body)
    except (InvalidSignature, ValueError, AssertionError):
        problems.append("the manifest signature does not verify")
    for entry in manifest.get("files", []):
        path = directory / entry["name"]
        if not path.exists():
            problems.append(f"{entry['name']}: missing")
            continue
        if _sha256(path) != entry["sha256"]:
            problems.append(f"{entry['name']}: SHA-256 differs from the manifest")
    return problems


def finetune(
    spec: ExportSpec,
    out: Path,
    *,
    clickhouse: Any,
    keyring: KeyRing,
    style: str = "chat",
    model: str | None = None,
    min_score: float | None = None,
) -> int:
    """Write transcripts as JSONL training records; returns how many were written. With `min_score`,
    only exchanges whose mean feedback score is at least that (unscored ones are left out)."""
    if style not in ("chat", "completion"):
        raise ExportError("style must be chat or completion")
    if min_score is not None and not math.isfinite(min_score):
        raise ExportError("min-score must be a finite number")
    written = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for row in _transcripts(clickhouse, keyring, spec, model=model, ok_only=True, min_score=min_score):
            record = _training_record(row, style)
            if record is not None:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += 1
    return written


def _training_record(row: dict[str, Any], style: str) -> dict[str, Any] | None:
    fmt = WIRE_FORMATS.get(row.get("route", ""))
    response = row.get("response")
    if fmt is None or not isinstance(response, list | dict) or not response:
        return None
    answer = fmt.first_text(response)
    request = row.get("request")
    if style == "chat":
        messages = _as_chat_messages(request)
        if messages is None:
            return None
        return {"messages": [*messages, {"role": "assistant", "content": answer}]}
    prompt = request if isinstance(request, str) else json.dumps(request)
    return {"prompt": prompt, "completion": answer}


def _as_chat_messages(request: Any) -> list[dict[str, Any]] | None:
    """A transcript's request as chat messages: chat's own list, or the Responses API's
    `{instructions, input}` and Anthropic's `{system, messages}` with their texts joined per turn."""
    if isinstance(request, list):
        return request
    if not isinstance(request, dict):
        return None
    system = request.get("instructions", request.get("system"))
    turns = request.get("input", request.get("messages"))
    messages: list[dict[str, Any]] = []
    if _text(system):
        messages.append({"role": "system", "content": _text(system)})
    if isinstance(turns, str):
        turns = [{"role": "user", "content": turns}]
    for turn in turns if isinstance(turns, list) else ():
        if isinstance(turn, dict) and turn.get("role") in ("system", "developer", "user", "assistant"):
            role = "system" if turn["role"] == "developer" else turn["role"]
            messages.append({"role": role, "content": _text(turn.get("content"))})
    return messages or None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else ()
    return "".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))


# -- sources -----------------------------------------------------------------------------------


# Rows per block read from ClickHouse: what an export holds in memory at a time.
_BLOCKS = {"max_block_size": 1000}


def _scope_clause(spec: ExportSpec) -> tuple[str, dict[str, Any]]:
    clause = "tenant = {tenant:String} AND ts >= {since:DateTime64(3, 'UTC')} "
    clause += "AND ts < {until:DateTime64(3, 'UTC')}"
    params: dict[str, Any] = {"tenant": spec.tenant, "since": spec.since, "until": spec.until}
    if spec.scope is not None and spec.scope.teams is not None:
        clause += " AND has({teams:Array(String)}, team)"
        params["teams"] = sorted(spec.scope.teams)
    return clause, params


def _requests(clickhouse: Any, spec: ExportSpec) -> Iterable[dict[str, Any]]:
    clause, params = _scope_clause(spec)
    with clickhouse.query_row_block_stream(
        f"SELECT * FROM requests FINAL WHERE {clause} ORDER BY ts", parameters=params, settings=_BLOCKS
    ) as stream:
        names = stream.source.column_names
        for block in stream:
            for row in block:
                yield dict(zip(names, row, strict=True))


def _audit(db: sessionmaker[Session], spec: ExportSpec) -> Iterable[dict[str, Any]]:
    # Read in pages, not the tenant's whole log at once; the time window is checked on the aware value
    # (SQLite hands naive datetimes back).
    with db() as session:
        rows = session.execute(
            select(AuditEntry)
            .where(AuditEntry.tenant == spec.tenant)
            .order_by(AuditEntry.seq)
            .execution_options(yield_per=500)
        ).scalars()
        for entry in rows:
            at = as_utc(entry.at)
            if at is None or not spec.since <= at < spec.until:
                continue
            yield {
                "seq": entry.seq,
                "at": at,
                "actor": entry.actor,
                "action": entry.action,
                "target": entry.target,
                "outcome": entry.outcome,
                "ip": entry.ip,
                "before": entry.before,
                "after": entry.after,
                "hash": entry.hash,
                "prev_hash": entry.prev_hash,
            }


def _transcripts(
    clickhouse: Any,
    keyring: KeyRing,
    spec: ExportSpec,
    *,
    model: str | None = None,
    ok_only: bool = False,
    min_score: float | None = None,
) -> Iterable[dict[str, Any]]:
    """Decrypted one block at a time: an export holds one block of transcripts in memory, never all."""
    clause, params = _scope_clause(spec)
    if min_score is not None:
        # Filtered in ClickHouse: the feedback of a whole range never comes into memory.
        clause += (
            " AND request_id IN (SELECT request_id FROM feedback FINAL WHERE tenant = {tenant:String}"
            " AND score IS NOT NULL GROUP BY request_id HAVING avg(score) >= {min_score:Float64})"
        )
        params["min_score"] = min_score
    with clickhouse.query_row_block_stream(
        "SELECT request_id, team, ts, key_id, nonce, ciphertext FROM transcripts FINAL "
        f"WHERE {clause} ORDER BY ts",
        parameters=params,
        settings=_BLOCKS,
        column_formats=BINARY,
    ) as stream:
        for block in stream:
            for request_id, team, ts, key_id, nonce, ciphertext in block:
                try:
                    content = keyring.open(spec.tenant, request_id, ts, Sealed(key_id, nonce, ciphertext))
                except CryptoError as exc:
                    if ok_only:
                        continue
                    content = {"unreadable": str(exc)}
                if model is not None and content.get("model") != model:
                    continue
                # The same columns on every row, so a columnar file can be written block by block.
                yield {
                    "request_id": str(request_id),
                    "team": team,
                    "ts": ts,
                    **{key: content.get(key) for key in _TRANSCRIPT_FIELDS},
                    **{k: v for k, v in content.items() if k not in _TRANSCRIPT_FIELDS},
                }


_TRANSCRIPT_FIELDS = ("route", "model", "request", "response", "unreadable")


def _feedback(clickhouse: Any, keyring: KeyRing, spec: ExportSpec) -> Iterable[dict[str, Any]]:
    """Feedback on the exported requests. Comments are opened only when the export carries transcripts
    (and so needed `transcripts:read`); otherwise the row says only whether there was one."""
    clause, params = _scope_clause(spec)
    with clickhouse.query_row_block_stream(
        "SELECT feedback_id, request_id, team, ts, score, label, source, actor, key_id, nonce, ciphertext"
        " FROM feedback FINAL WHERE tenant = {tenant:String} AND request_id IN"
        f" (SELECT request_id FROM requests WHERE {clause}) ORDER BY ts, feedback_id",
        parameters=params,
        settings=_BLOCKS,
        column_formats=BINARY,
    ) as stream:
        for block in stream:
            for feedback_id, request_id, team, ts, score, label, source, actor, key_id, nonce, box in block:
                comment: str | None = None
                if key_id and spec.transcripts:
                    try:
                        opened = keyring.open(spec.tenant, feedback_id, ts, Sealed(key_id, nonce, box))
                        comment = str(opened.get("comment", ""))
                    except CryptoError as exc:
                        comment = f"unreadable: {exc}"
                yield {
                    "feedback_id": str(feedback_id),
                    "request_id": str(request_id),
                    "team": team,
                    "ts": ts,
                    "score": score,
                    "label": label,
                    "source": source,
                    "actor": actor,
                    "has_comment": bool(key_id),
                    "comment": comment,
                }


# -- writers -----------------------------------------------------------------------------------


def _write(
    out: Path, name: str, fmt: str, rows: Iterable[dict[str, Any]], progress: Progress | None
) -> dict[str, str | int]:
    path = out / f"{name}.{fmt}"
    count = 0
    if fmt == "parquet":
        count = _write_parquet(path, name, rows, progress)
    else:
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer: csv.DictWriter[str] | None = None
            for row in rows:
                plain = {k: _cell(v) for k, v in row.items()}
                if fmt == "jsonl":
                    handle.write(json.dumps(plain, ensure_ascii=False) + "\n")
                else:
                    if writer is None:
                        writer = csv.DictWriter(handle, fieldnames=list(plain))
                        writer.writeheader()
                    writer.writerow(
                        {
                            k: _csv_cell(json.dumps(v) if isinstance(v, dict | list) else v)
                            for k, v in plain.items()
                        }
                    )
                count += 1
                if progress and count % 1000 == 0:
                    progress(name, 1000)
            if progress:
                progress(name, count % 1000)
    return {"name": path.name, "rows": count, "bytes": path.stat().st_size, "sha256": _sha256(path)}


_PARQUET_BATCH = 500


def _write_parquet(path: Path, name: str, rows: Iterable[dict[str, Any]], progress: Progress | None) -> int:
    """Row groups of `_PARQUET_BATCH` rows, so memory stays bounded whatever the export's size. The first
    batch fixes the schema; a column that is empty there is written as text (its type is unknown)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer: Any = None
    schema: Any = None
    as_text: set[str] = set()
    count = 0

    def flush(batch: list[dict[str, Any]]) -> None:
        nonlocal writer, schema
        if writer is None:
            inferred = pa.Table.from_pylist(batch).schema
            as_text.update(f.name for f in inferred if pa.types.is_null(f.type))
            schema = pa.schema([pa.field(f.name, pa.string()) if f.name in as_text else f for f in inferred])
            writer = pq.ParquetWriter(path, schema)
        for row in batch:
            for key in as_text:
                if row.get(key) is not None:
                    row[key] = str(row[key])
        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
        if progress:
            progress(name, len(batch))

    batch: list[dict[str, Any]] = []
    try:
        for row in rows:
            # Nested values as JSON text: transcripts differ in shape from row to row.
            batch.append(
                {k: json.dumps(v) if isinstance(v, dict | list) else _cell(v) for k, v in row.items()}
            )
            count += 1
            if len(batch) == _PARQUET_BATCH:
                flush(batch)
                batch = []
        if batch:
            flush(batch)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        pq.write_table(pa.table({}), path)
    return count


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict | list):
        return json.loads(json.dumps(value, default=str))
    return value


# A spreadsheet runs a cell that starts with one of these as a formula (`=HYPERLINK(...)` in a model name a
# caller chose); a leading apostrophe makes it text. OWASP's CSV-injection advice.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
