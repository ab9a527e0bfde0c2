"""Exports in the background: an admin API request starts one and gets its id at once.

Progress and outcome are written beside the export (`<id>.status.json`, replaced atomically), so any
worker process can answer for it and a restart leaves a readable record. A bounded pool runs the jobs:
a burst of requests queues exports instead of starting as many readers of ClickHouse.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from proxy.compliance.exports import ExportError, Progress

log = logging.getLogger(__name__)

# An export's own function: given a progress callback, it writes the export and returns its manifest.
Job = Callable[[Progress], dict[str, Any]]
_WRITE_EVERY_S = 0.5


def status_path(exports_dir: Path, export_id: str) -> Path:
    return exports_dir / f"{export_id}.status.json"


def read_status(exports_dir: Path, export_id: str) -> dict[str, Any] | None:
    try:
        status: dict[str, Any] = json.loads(status_path(exports_dir, export_id).read_text())
    except (OSError, ValueError):
        return None
    return status


class ExportJobs:
    def __init__(self, exports_dir: Path, workers: int = 2) -> None:
        self._dir = exports_dir
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="warden-export")

    def start(self, export_id: str, tenant: str, teams: list[str] | None, job: Job) -> dict[str, Any]:
        """Queue the export; its first status (state `queued`)."""
        self._dir.mkdir(parents=True, exist_ok=True)
        status = _Status(
            self._dir,
            {
                "id": export_id,
                "tenant": tenant,
                "teams": teams,
                "state": "queued",
                "rows": {},
                "started_at": datetime.now(UTC).isoformat(),
            },
        )
        status.write()
        self._pool.submit(self._run, status, job)
        return dict(status.data)

    def _run(self, status: _Status, job: Job) -> None:
        status.update(state="running")
        try:
            manifest = job(status.progress)
        except ExportError as exc:
            status.update(state="failed", error=str(exc))
            return
        except Exception:
            # The type only: a message could quote exported data.
            log.exception("export %s failed", status.data["id"])
            status.update(state="failed", error="internal error; see Warden's log")
            return
        if not status.path.exists():
            # Erased while it ran: what it wrote may hold the erased subject's data.
            shutil.rmtree(self._dir / status.data["id"], ignore_errors=True)
            return
        status.update(state="done", files=manifest["files"], finished_at=datetime.now(UTC).isoformat())

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Status:
    def __init__(self, directory: Path, data: dict[str, Any]) -> None:
        self.path = status_path(directory, data["id"])
        self.data = data
        self._lock = threading.Lock()
        self._written = 0.0

    def progress(self, name: str, rows: int) -> None:
        with self._lock:
            counts = self.data["rows"]
            counts[name] = counts.get(name, 0) + rows
            if time.monotonic() - self._written < _WRITE_EVERY_S:
                return
        self.write()

    def update(self, **changes: Any) -> None:
        with self._lock:
            self.data.update(changes)
        self.write()

    def write(self) -> None:
        with self._lock:
            if self.data["state"] != "queued" and not self.path.exists():
                return  # erased meanwhile: leave no new record
            body = json.dumps(self.data, indent=2, sort_keys=True)
            self._written = time.monotonic()
            temporary = self.path.with_suffix(f".{threading.get_ident()}.tmp")
            temporary.write_text(body)
            os.replace(temporary, self.path)
