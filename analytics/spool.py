"""The spool: an append-only log of event records on local disk, written before a response completes.

Each process owns one directory (`<spool_dir>/w-<id>/`, held by an flock) of numbered segment files.
A record is `length | crc32 | payload`; a torn last record (power loss mid-write) is detected and
skipped. A segment is deleted once every record in it is in ClickHouse. A process that finds the
directory of a dead process (its lock is free) adopts it and replays what is left.

Records are written with os.write, which survives a SIGKILL of the process (the kernel holds the
bytes); fsync every `fsync_interval` makes them survive a power cut too (0: on every append).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)
_HEADER = struct.Struct(">II")


class Spool:
    def __init__(self, directory: Path, *, segment_events: int = 5000, fsync_interval: float = 0.05) -> None:
        self.root = Path(directory)
        self.root.mkdir(parents=True, exist_ok=True)
        self.dir = self.root / f"w-{uuid.uuid4().hex[:12]}"
        self.dir.mkdir()
        self._lock_fd = os.open(self.dir / "owner.lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._segment_events = segment_events
        self._fsync_interval = fsync_interval
        self._lock = threading.Lock()
        self._current_id = 0
        self._fd = -1
        self._count = 0
        self._dirty = False
        self.appended: dict[int, int] = {}
        self._orphan_fds: dict[Path, int] = {}
        self._closed = False
        self._open_segment(1)
        self._syncer: threading.Thread | None = None
        if fsync_interval > 0:
            self._stop = threading.Event()
            self._syncer = threading.Thread(target=self._sync_loop, name="warden-spool-fsync", daemon=True)
            self._syncer.start()

    # -- writing -------------------------------------------------------------------------------

    def append(self, payload: bytes) -> int:
        """Write one record; returns its segment id. Raises OSError when the disk refuses."""
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            if self._closed:
                raise OSError("spool is closed")
            segment = self._current_id
            written = os.write(self._fd, record)
            if written != len(record):
                raise OSError(f"short write to spool ({written} of {len(record)} bytes)")
            self._count += 1
            self.appended[segment] = self._count
            if self._fsync_interval <= 0:
                os.fsync(self._fd)
            else:
                self._dirty = True
            if self._count >= self._segment_events:
                self._rotate_locked()
        return segment

    def rotate(self) -> int:
        """Seal the current segment (if it has records); return the id of the last sealed segment."""
        with self._lock:
            if self._count:
                self._rotate_locked()
            return self._current_id - 1

    def _rotate_locked(self) -> None:
        self._finish_fd()
        self._open_segment(self._current_id + 1)

    def _finish_fd(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as exc:
            log.error("spool fsync failed: %s", exc)
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def _open_segment(self, segment: int) -> None:
        self._current_id = segment
        self._count = 0
        self._dirty = False
        self._fd = os.open(self._path(segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def _sync_loop(self) -> None:
        while not self._stop.wait(self._fsync_interval):
            with self._lock:
                if not self._dirty or self._closed:
                    continue
                # fsync can take milliseconds: do it on a duplicate, outside the lock appends need.
                fd = os.dup(self._fd)
                self._dirty = False
            try:
                os.fsync(fd)
            except OSError as exc:
                log.error("spool fsync failed: %s", exc)  # the next append reports a dead disk too
            finally:
                os.close(fd)

    # -- reading and cleanup -------------------------------------------------------------------

    def is_sealed(self, segment: int) -> bool:
        """True once `segment` no longer receives records (no directory listing needed)."""
        with self._lock:
            return segment < self._current_id

    def sealed(self, through: int) -> list[int]:
        with self._lock:
            current = self._current_id
        return sorted(s for s in self._segments(self.dir) if s <= through and s != current)

    def read(self, segment: int) -> list[bytes]:
        return list(read_records(self._path(segment)))

    def remove(self, segment: int) -> None:
        with self._lock:
            if segment == self._current_id:
                return
            self.appended.pop(segment, None)
        self._path(segment).unlink(missing_ok=True)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("w-*/*.seg") if p.exists())

    def adopt_orphans(self) -> list[Path]:
        """Directories of dead processes (their lock is free): replay them, then `discard_orphan`."""
        orphans = []
        for candidate in sorted(self.root.glob("w-*")):
            if candidate == self.dir or not candidate.is_dir():
                continue
            lock_path = candidate / "owner.lock"
            try:
                fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # its owner is alive
            orphans.append((candidate, fd))
        self._orphan_fds = dict(orphans)
        return [path for path, _ in orphans]

    def orphan_segments(self, directory: Path) -> list[Path]:
        return [directory / f"{s:012d}.seg" for s in sorted(self._segments(directory))]

    def discard_orphan(self, directory: Path) -> None:
        fd = self._orphan_fds.pop(directory, None)
        shutil.rmtree(directory, ignore_errors=True)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._finish_fd()
        if self._syncer is not None:
            self._stop.set()
            self._syncer.join(5)
        empty = all(p.stat().st_size == 0 for p in self.dir.glob("*.seg"))
        if empty:
            shutil.rmtree(self.dir, ignore_errors=True)
        os.close(self._lock_fd)

    def _path(self, segment: int) -> Path:
        return self.dir / f"{segment:012d}.seg"

    @staticmethod
    def _segments(directory: Path) -> list[int]:
        return [int(p.stem) for p in directory.glob("*.seg") if p.stem.isdigit()]


def read_records(path: Path) -> Iterator[bytes]:
    """The intact records of a segment; stops at a torn or corrupt tail."""
    data = path.read_bytes()
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        start, end = offset + _HEADER.size, offset + _HEADER.size + length
        if end > len(data) or zlib.crc32(data[start:end]) != crc:
            log.warning("spool segment %s has a torn record at byte %d; the rest is skipped", path, offset)
            return
        yield data[start:end]
        offset = end
