"""Event sinks: where exchange events go after the response. `emit` never blocks the request."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from clickhouse_connect.driver.client import Client

from analytics.events import COLUMNS, ExchangeEvent

log = logging.getLogger(__name__)


class EventSink(Protocol):
    def emit(self, event: ExchangeEvent) -> None: ...

    def flush(self, timeout: float = 10.0) -> bool: ...

    def close(self, timeout: float = 10.0) -> None: ...


@dataclass(slots=True)
class SinkStats:
    queued: int = 0
    inserted: int = 0
    failed_inserts: int = 0
    dropped: int = 0


class MemorySink:
    """Keeps events in a list: the test double, and a sink for runs that record nothing durable."""

    def __init__(self) -> None:
        self.events: list[ExchangeEvent] = []
        self._lock = threading.Lock()

    def emit(self, event: ExchangeEvent) -> None:
        with self._lock:
            self.events.append(event)

    def flush(self, timeout: float = 10.0) -> bool:
        return True

    def close(self, timeout: float = 10.0) -> None:
        return None


class ClickHouseSink:
    """Bounded queue -> batches -> ClickHouse, from one writer thread per process.

    The writer starts at the first `emit` in the process that serves, never before a fork: chDB
    hangs in a child forked after it was opened, and a thread does not survive a fork anyway.
    A failed insert is retried with backoff while new events wait in the bounded queue; when the
    queue is full, events are dropped and counted (the durable spool replaces that in a later
    release).
    """

    def __init__(
        self,
        connect: Callable[[], Client],
        *,
        table: str = "requests",
        queue_size: int = 100_000,
        batch_size: int = 1_000,
        flush_interval: float = 1.0,
    ) -> None:
        self._connect = connect
        self._table = table
        self._queue: queue.Queue[ExchangeEvent | None] = queue.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._closing = False
        self._in_flight = 0
        self.stats = SinkStats()

    # -- request path --------------------------------------------------------------------------

    def emit(self, event: ExchangeEvent) -> None:
        if self._pid != os.getpid():
            self._start_writer()
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._lock:
                self.stats.dropped += 1
                dropped = self.stats.dropped
            if dropped == 1 or dropped % 1000 == 0:
                log.error("analytics queue full: %d events dropped so far", dropped)
            return
        with self._lock:
            self.stats.queued += 1

    # -- lifecycle -----------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event is inserted (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._settled:
            while self._queue.unfinished_tasks or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._settled.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float = 10.0) -> None:
        if self._thread is None or self._pid != os.getpid():
            return
        self.flush(timeout)
        self._closing = True
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None
        self._pid = None

    def _start_writer(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._closing = False
            self._thread = threading.Thread(target=self._run, name="warden-sink", daemon=True)
            self._pid = os.getpid()
            self._thread.start()

    # -- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        client: Client | None = None
        try:
            while True:
                batch, stop = self._next_batch()
                if batch:
                    client = self._insert(client, batch)
                if stop:
                    return
        finally:
            if client is not None:
                client.close()

    def _next_batch(self) -> tuple[list[ExchangeEvent], bool]:
        first = self._queue.get()
        if first is None:
            self._queue.task_done()
            return [], True
        batch = [first]
        with self._lock:
            self._in_flight = 1
        deadline = time.monotonic() + self._flush_interval
        stop = False
        while len(batch) < self._batch_size:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.task_done()
                stop = True
                break
            batch.append(item)
        with self._lock:
            self._in_flight = len(batch)
            for _ in batch:
                self._queue.task_done()
        return batch, stop

    def _insert(self, client: Client | None, batch: list[ExchangeEvent]) -> Client | None:
        rows = [event.as_row() for event in batch]
        delay = 0.2
        while True:
            try:
                if client is None:
                    client = self._connect()
                client.insert(self._table, rows, column_names=COLUMNS)
            except Exception as exc:
                with self._lock:
                    self.stats.failed_inserts += 1
                log.warning(
                    "analytics insert of %d events failed (%s); retrying", len(rows), type(exc).__name__
                )
                if client is not None:
                    client.close()
                    client = None
                if self._closing:
                    with self._lock:
                        self.stats.dropped += len(rows)
                        self._in_flight = 0
                        self._settled.notify_all()
                    log.error("analytics sink closing: %d events not recorded", len(rows))
                    return None
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            with self._lock:
                self.stats.inserted += len(rows)
                self._in_flight = 0
                self._settled.notify_all()
            return client
