"""Event sinks: where exchange events go after the response. Nothing is lost, and `emit` never waits
for ClickHouse.

`ClickHouseSink.emit` appends the event to the on-disk spool (the durable copy), then queues it in
memory. A writer thread inserts queued events in batches and deletes spool segments once all their
events are in. When an insert fails, the writer seals the current segment and replays every segment
up to it from disk once ClickHouse answers again; queued events already covered by that replay are
skipped. A full queue is not a loss either: the event is on disk and the next replay takes it.
Replays are idempotent: `requests` and `transcripts` are ReplacingMergeTrees keyed by request_id and
each replayed block carries an insert deduplication token.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from clickhouse_connect.driver.client import Client

from analytics.events import (
    COLUMNS,
    TRANSCRIPT_COLUMNS,
    ExchangeEvent,
    TranscriptRow,
    encode,
    record_row,
    row_json,
)
from analytics.spool import Spool, read_records

log = logging.getLogger(__name__)


class SpoolUnavailable(OSError):
    """The event could not be written to disk; it is only in memory (fail-closed setups refuse)."""


class EventSink(Protocol):
    def emit(self, event: ExchangeEvent, transcript: TranscriptRow | None = None) -> None: ...

    def healthy(self) -> bool: ...

    def flush(self, timeout: float = 10.0) -> bool: ...

    def close(self, timeout: float = 10.0) -> None: ...


@dataclass(slots=True)
class SinkStats:
    queued: int = 0
    inserted: int = 0
    replayed: int = 0
    spooled: int = 0  # events that took the disk path (outage, full queue, leftover at start)
    failed_inserts: int = 0
    overflowed: int = 0
    spool_errors: int = 0
    lost: int = 0


@dataclass(slots=True)
class _Item:
    segment: int
    row: bytes  # the `requests` row, as `row_json` encodes it
    transcript: TranscriptRow | None


class ClickHouseSink:
    def __init__(
        self,
        connect: Callable[[], Client],
        spool_dir: Path | str,
        *,
        queue_size: int = 100_000,
        batch_size: int = 1_000,
        flush_interval: float = 1.0,
        segment_events: int = 5_000,
        fsync_interval: float = 0.05,
    ) -> None:
        self._connect = connect
        self._spool_dir = Path(spool_dir)
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._segment_events = segment_events
        self._fsync_interval = fsync_interval
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._pid: int | None = None
        self._spool: Spool | None = None
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._busy = False
        self._replay_through: int | None = None  # segments up to this id must be replayed from disk
        self._replayed_through = 0  # queued events of segments up to here are already in
        self._acks: dict[int, int] = {}
        self._needs_cut = False  # events exist only on disk (full queue): replay up to a new cut
        self._orphans_pending = True
        self._stopping = threading.Event()
        self.stats = SinkStats()

    # -- request path --------------------------------------------------------------------------

    def emit(self, event: ExchangeEvent, transcript: TranscriptRow | None = None) -> None:
        """Make the event durable on disk, then queue it. Raises SpoolUnavailable if the disk refused
        (the event is still queued in memory and will be inserted if ClickHouse is up)."""
        if self._pid != os.getpid():
            self._start()
        assert self._spool is not None
        failure: OSError | None = None
        row = row_json(event)
        try:
            segment = self._spool.append(encode(event, transcript, row))
        except OSError as exc:
            failure, segment = exc, 0
            with self._lock:
                self.stats.spool_errors += 1
        try:
            self._queue.put_nowait(_Item(segment, row, transcript))
        except queue.Full:
            with self._lock:
                self.stats.overflowed += 1
                if failure is not None:
                    self.stats.lost += 1
                else:
                    self._needs_cut = True
        with self._lock:
            self.stats.queued += 1
        if failure is not None:
            raise SpoolUnavailable(f"event not written to the spool: {failure}") from failure

    def healthy(self) -> bool:
        """False once the spool refused a write: fail-closed setups stop serving."""
        return self.stats.spool_errors == 0 or self._spool_writable()

    def spool_bytes(self) -> int:
        return self._spool.size_bytes() if self._spool is not None else 0

    def _spool_writable(self) -> bool:
        try:
            probe = self._spool_dir / ".probe"
            probe.write_bytes(b"x")
            probe.unlink()
            return True
        except OSError:
            return False

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Open the spool and start the writer now (it also replays what earlier processes left)."""
        if self._pid != os.getpid():
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            # After a fork the parent's queue, spool handle and thread are not ours.
            self._queue = queue.Queue(maxsize=self._queue_size)
            self._spool = Spool(
                self._spool_dir, segment_events=self._segment_events, fsync_interval=self._fsync_interval
            )
            self._orphans_pending = True
            self._stopping = threading.Event()
            self._thread = threading.Thread(target=self._run, name="warden-sink", daemon=True)
            self._pid = os.getpid()
            self._thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event emitted so far is in ClickHouse; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._settled:
            while (
                self._queue.unfinished_tasks
                or self._busy
                or self._replay_through is not None
                or self._needs_cut
                or (self._orphans_pending and self._thread is not None)
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._settled.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float = 10.0) -> None:
        if self._thread is None or self._pid != os.getpid():
            return
        self.flush(timeout)
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout)
        assert self._spool is not None
        self._spool.rotate()
        self._remove_acked()
        self._spool.close()
        self._thread = None
        self._pid = None

    # -- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        client: Client | None = None
        delay = 0.2
        try:
            while True:
                if self._needs_cut and self._replay_through is None:
                    assert self._spool is not None
                    with self._lock:
                        self._needs_cut = False
                        self._replay_through = self._spool.rotate()
                if self._orphans_pending or self._replay_through is not None:
                    ok, client = self._replay(client)
                    if not ok:
                        if self._stop_requested(delay):
                            return
                        delay = min(delay * 2, 5.0)
                        continue
                    delay = 0.2
                batch, stop = self._next_batch()
                if batch:
                    client = self._insert_batch(client, batch)
                if stop:
                    return
        finally:
            if client is not None:
                client.close()
            with self._settled:
                self._busy = False
                self._settled.notify_all()

    def _stop_requested(self, delay: float) -> bool:
        """Sleep `delay` while ClickHouse is down, unless close() asked the writer to stop."""
        return self._stopping.wait(delay)

    def _next_batch(self) -> tuple[list[_Item], bool]:
        try:
            first = self._queue.get(timeout=0.5)
        except queue.Empty:
            return [], False
        if first is None:
            self._queue.task_done()
            return [], True
        batch = [first]
        with self._lock:
            self._busy = True
        if self._queue.qsize() < self._batch_size - 1:
            # Sleep the interval out rather than wait on the queue: a waiting get() is woken by every
            # put, one thread switch per request on the serving path (12% of a worker's CPU at 32
            # concurrent requests). close() sets the event, so stopping does not wait.
            self._stopping.wait(self._flush_interval)
        stop = False
        while len(batch) < self._batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.task_done()
                stop = True
                break
            batch.append(item)
        with self._lock:
            for _ in batch:
                self._queue.task_done()
        return batch, stop

    def _insert_batch(self, client: Client | None, batch: list[_Item]) -> Client | None:
        fresh = [item for item in batch if item.segment > self._replayed_through or item.segment == 0]
        try:
            if fresh:
                client = client or self._connect()
                self._insert(client, [i.row for i in fresh], [i.transcript for i in fresh if i.transcript])
        except Exception as exc:
            log.warning(
                "analytics insert of %d events failed (%s); replaying from the spool when ClickHouse is back",
                len(fresh),
                type(exc).__name__,
            )
            if client is not None:
                client.close()
            with self._settled:
                self.stats.failed_inserts += 1
                lost = sum(1 for item in fresh if item.segment == 0)
                self.stats.lost += lost  # only events the disk had refused
                assert self._spool is not None
                self._replay_through = self._spool.rotate()
                self._busy = False
                self._settled.notify_all()
            return None
        with self._settled:
            self.stats.inserted += len(fresh)
            for item in fresh:
                if item.segment:
                    self._acks[item.segment] = self._acks.get(item.segment, 0) + 1
            self._busy = False
            self._settled.notify_all()
        self._remove_acked()
        return client

    def _remove_acked(self) -> None:
        assert self._spool is not None
        for segment, acked in list(self._acks.items()):
            if self._spool.is_sealed(segment) and acked >= self._spool.appended.get(segment, 0):
                self._spool.remove(segment)
                del self._acks[segment]

    def _replay(self, client: Client | None) -> tuple[bool, Client | None]:
        """Insert leftover segments (of dead processes, then ours up to the cut); True when done."""
        assert self._spool is not None
        try:
            client = client or self._connect()
            if self._orphans_pending:
                for directory in self._spool.adopt_orphans():
                    for path in self._spool.orphan_segments(directory):
                        self._replay_file(client, path, f"{directory.name}-{path.stem}")
                    self._spool.discard_orphan(directory)
            through = self._replay_through
            if through is not None:
                for segment in self._spool.sealed(through):
                    self._replay_file(
                        client, self._spool.dir / f"{segment:012d}.seg", f"{self._spool.dir.name}-{segment}"
                    )
                    self._spool.remove(segment)
                    self._acks.pop(segment, None)
        except Exception as exc:
            log.warning("spool replay waiting for ClickHouse (%s)", type(exc).__name__)
            with self._lock:
                self.stats.failed_inserts += 1
            if client is not None:
                client.close()
            return False, None
        with self._settled:
            if self._replay_through is not None:
                self._replayed_through = max(self._replayed_through, self._replay_through)
            self._replay_through = None
            self._orphans_pending = False
            self._settled.notify_all()
        return True, client

    def _replay_file(self, client: Client, path: Path, token: str) -> None:
        records = [record_row(record) for record in read_records(path)]
        for start in range(0, len(records), self._batch_size):
            chunk = records[start : start + self._batch_size]
            self._insert(
                client,
                [e for e, _ in chunk],
                [t for _, t in chunk if t is not None],
                token=f"{token}-{start}",
            )
            with self._lock:
                self.stats.replayed += len(chunk)
                self.stats.spooled += len(chunk)
        path.unlink(missing_ok=True)

    @staticmethod
    def _insert(
        client: Client,
        rows: list[bytes],
        transcripts: list[TranscriptRow],
        token: str | None = None,
    ) -> None:
        # Only replays need block deduplication; first inserts skip its hashing and bookkeeping.
        settings = {"insert_deduplication_token": f"{token}-r"} if token else {"insert_deduplicate": 0}
        # The rows as the request threads encoded them: converting 40 columns per row again here, as
        # client.insert does, cost the worker 10.8 ms of CPU (and GIL) per 1,000 events; this, 1.3 ms.
        client.raw_insert("requests", COLUMNS, b"\n".join(rows), settings=settings, fmt="JSONCompactEachRow")
        if transcripts:
            settings = {"insert_deduplication_token": f"{token}-t"} if token else {"insert_deduplicate": 0}
            client.insert(
                "transcripts",
                [t.as_row() for t in transcripts],
                column_names=TRANSCRIPT_COLUMNS,
                settings=settings,
            )
