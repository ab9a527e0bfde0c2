"""The ClickHouse sink and its spool: batches, outages, a full queue, a killed process, torn records.
Nothing is lost in any of them."""

from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
import zlib
from datetime import UTC, datetime
from pathlib import Path

from analytics import schema
from analytics.clickhouse import connect
from analytics.events import COLUMNS, ExchangeEvent, TranscriptRow, decode, encode
from analytics.sink import ClickHouseSink
from analytics.spool import Spool, read_records
from tests.support import ROOT


def event(**overrides: object) -> ExchangeEvent:
    values: dict[str, object] = dict(
        tenant="default",
        team="alpha",
        project="",
        api_key_id="key_1",
        request_id=uuid.uuid4(),
        ts=datetime.now(UTC),
        route="chat.completions",
        model="m",
        upstream="u",
        status=200,
        error_class="",
        streamed=False,
        cache_hit=False,
        latency_ms=12.5,
        ttft_ms=None,
        upstream_ms=11.0,
        overhead_ms=1.5,
        prompt_tokens=3,
        completion_tokens=4,
        cached_tokens=0,
        cost_micro_usd=None,
        finish_reason="stop",
        choices=1,
        subject_hash="",
        retention_days=30,
    )
    values.update(overrides)
    return ExchangeEvent(**values)  # type: ignore[arg-type]


def migrated(url: str) -> str:
    client = connect(url, create_database=True)
    schema.upgrade(client)
    client.close()
    return url


def down_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/nothing"


def count(url: str, table: str = "requests") -> int:
    reader = connect(url)
    try:
        return reader.query(f"SELECT count() FROM {table} FINAL").result_rows[0][0]
    finally:
        reader.close()


def segments(spool_dir: Path) -> list[Path]:
    return [p for p in spool_dir.glob("w-*/*.seg") if p.stat().st_size > 0]


def test_record_format_round_trips() -> None:
    item = event(ttft_ms=3.25, cost_micro_usd=17)
    sealed = TranscriptRow(
        "default", "alpha", item.request_id, item.ts, "", "dek_1", b"\x00\x01", b"\xff" * 40, 30
    )
    back_event, back_transcript = decode(encode(item, sealed))
    assert back_event == item and back_transcript == sealed


def test_events_arrive_in_batches_and_the_spool_empties(clickhouse_url: str, tmp_path: Path) -> None:
    migrated(clickhouse_url)
    sink = ClickHouseSink(
        lambda: connect(clickhouse_url),
        tmp_path / "spool",
        batch_size=1000,
        flush_interval=0.2,
        segment_events=700,
    )
    assert sink._thread is None, "no writer thread before the first event (it would not survive a fork)"
    for i in range(2500):
        sink.emit(event(prompt_tokens=i))
    assert sink.flush(60)
    sink.close()
    assert sink.stats.inserted == 2500 and sink.stats.lost == 0
    assert count(clickhouse_url) == 2500
    assert segments(tmp_path / "spool") == [], "segments whose events are all in ClickHouse are deleted"


def test_an_outage_delays_events_but_loses_none(tmp_path: Path) -> None:
    """A real outage: the ClickHouse HTTP endpoint is stopped and restarted on the same port and data."""
    server = ChdbServer(tmp_path / "ch")
    url = migrated(f"{server.url}/warden")
    sink = ClickHouseSink(lambda: connect(url), tmp_path / "spool", flush_interval=0.05)
    try:
        for _ in range(10):
            sink.emit(event())
        assert sink.flush(30)
        server.stop()
        for _ in range(50):
            sink.emit(event())
        assert not sink.flush(2.0), "nothing can be written while ClickHouse is down"
        assert sink.stats.failed_inserts >= 1 and segments(tmp_path / "spool")
        server.start()
        for _ in range(20):  # arriving as it comes back
            sink.emit(event())
        assert sink.flush(60)
        sink.close()
        assert count(url) == 80 and sink.stats.lost == 0 and sink.stats.replayed >= 50
        assert segments(tmp_path / "spool") == []
    finally:
        server.stop()


class ChdbServer:
    """A chDB-served ClickHouse HTTP endpoint that can be stopped and started on the same port."""

    def __init__(self, data: Path) -> None:
        self.data = data
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen | None = None
        self.start()
        # Made beside the data directory at the first start, kept by the later ones.
        password = data.with_name(data.name + ".password").read_text().strip()
        self.url = f"http://default:{password}@127.0.0.1:{self.port}"

    def start(self) -> None:
        port_file = self.data.parent / f"port-{uuid.uuid4().hex[:6]}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "analytics.chdb_server",
                "--path",
                str(self.data),
                "--port",
                str(self.port),
                "--port-file",
                str(port_file),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(600):
            if port_file.exists():
                return
            assert self.process.poll() is None, "chDB HTTP endpoint exited"
            time.sleep(0.05)
        raise RuntimeError("chDB HTTP endpoint did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)


def test_a_full_queue_loses_nothing(clickhouse_http: str, tmp_path: Path) -> None:
    url = migrated(f"{clickhouse_http}/t_{uuid.uuid4().hex[:10]}")
    target = {"url": down_url()}
    sink = ClickHouseSink(
        lambda: connect(target["url"]), tmp_path / "spool", queue_size=10, flush_interval=0.01
    )
    for _ in range(300):
        sink.emit(event())
    assert sink.stats.overflowed >= 200
    target["url"] = url
    assert sink.flush(60)
    sink.close()
    assert count(url) == 300 and sink.stats.lost == 0


def test_a_killed_process_is_replayed_by_the_next(clickhouse_http: str, tmp_path: Path) -> None:
    url = migrated(f"{clickhouse_http}/t_{uuid.uuid4().hex[:10]}")
    script = f"""
import os, signal, uuid
from datetime import UTC, datetime
from analytics.clickhouse import connect
from analytics.sink import ClickHouseSink
from tests.analytics.test_sink import event
sink = ClickHouseSink(lambda: connect({down_url()!r}), {str(tmp_path / "spool")!r}, fsync_interval=0)
for i in range(40):
    sink.emit(event(prompt_tokens=i))
print("emitted", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == -signal.SIGKILL and "emitted" in done.stdout, done.stderr
    assert segments(tmp_path / "spool")
    survivor = ClickHouseSink(lambda: connect(url), tmp_path / "spool")
    survivor.start()
    assert survivor.flush(60)
    survivor.close()
    assert count(url) == 40 and survivor.stats.replayed == 40
    assert list((tmp_path / "spool").glob("w-*")) == [], "the dead process's directory is removed"


def test_replaying_twice_counts_once(clickhouse_url: str, tmp_path: Path) -> None:
    migrated(clickhouse_url)
    items = [event() for _ in range(25)]
    for _ in range(2):  # the same leftover segment, as if a crash came between insert and delete
        orphan = tmp_path / "spool" / f"w-dead{uuid.uuid4().hex[:6]}"
        orphan.mkdir(parents=True)
        with (orphan / "000000000001.seg").open("wb") as handle:
            for item in items:
                payload = encode(item, None)
                handle.write(struct.pack(">II", len(payload), zlib.crc32(payload)) + payload)
    sink = ClickHouseSink(lambda: connect(clickhouse_url), tmp_path / "spool")
    sink.start()
    assert sink.flush(60)
    sink.close()
    assert count(clickhouse_url) == 25


def test_a_torn_tail_is_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync_interval=0)
    for i in range(3):
        spool.append(f"record-{i}".encode())
    path = next(spool.dir.glob("*.seg"))
    with path.open("ab") as handle:
        handle.write(b"\x00\x00\x01\x00garbage")  # a record cut short by a crash
    assert list(read_records(path)) == [b"record-0", b"record-1", b"record-2"]
    spool.close()


def test_spool_directories_are_private(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync_interval=0)
    spool.append(b"x")
    segment = next(spool.dir.glob("*.seg"))
    assert oct(segment.stat().st_mode & 0o777) == "0o600"
    assert not spool.is_sealed(1) and spool.rotate() == 1 and spool.is_sealed(1)
    spool.close()
    # A segment holding a record stays until its events are in ClickHouse; an empty one goes.
    assert segment.exists() and list(read_records(segment)) == [b"x"]


def test_rows_arrive_as_the_request_threads_encoded_them(clickhouse_url: str, tmp_path: Path) -> None:
    """The writer inserts the JSON lines the request threads made (no conversion in between): every
    column type comes back as it went in, and an upstream string with a lone surrogate, which no
    UTF-8 encoder takes, does not poison its batch."""
    migrated(clickhouse_url)
    fine = event(
        ts=datetime(2026, 11, 30, 1, 2, 3, 456789, tzinfo=UTC),
        ttft_ms=3.25,
        cost_micro_usd=-17,
        streamed=True,
        finish_reason="arrêt \U0001f600",
        finding_stage=("input", "output"),
        finding_kind=("email", "toxicity"),
        finding_action=("mask", "flag"),
        finding_count=(2, 1),
        finding_score=(0.5, 0.75),
        prompt_name="ask",
        prompt_version=3,
    )
    odd = event(finish_reason="stop\ud800")
    sink = ClickHouseSink(lambda: connect(clickhouse_url), tmp_path / "spool", flush_interval=0.05)
    sink.emit(fine)
    sink.emit(odd)
    assert sink.flush(60) and sink.stats.failed_inserts == 0
    sink.close()
    reader = connect(clickhouse_url)
    try:
        query = "SELECT {} FROM requests FINAL WHERE request_id = %(id)s"
        (row,) = reader.query(query.format(", ".join(COLUMNS)), {"id": str(fine.request_id)}).result_rows
        (odd_reason,) = reader.query(query.format("finish_reason"), {"id": str(odd.request_id)}).result_rows
    finally:
        reader.close()
    back = dict(zip(COLUMNS, row, strict=True))
    for name, value in zip(COLUMNS, fine.as_row(), strict=True):
        if name == "ts":  # the column keeps milliseconds
            assert back[name].replace(tzinfo=UTC) == datetime(2026, 11, 30, 1, 2, 3, 456000, tzinfo=UTC)
        elif isinstance(value, tuple):
            assert tuple(back[name]) == value, name
        else:
            assert back[name] == value, name
    assert odd_reason == ("stop?",)


def test_records_an_older_warden_spooled_are_replayed(clickhouse_url: str, tmp_path: Path) -> None:
    """Before rows were spooled as inserted, the event's time was epoch microseconds."""
    migrated(clickhouse_url)
    item = event(ts=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), retention_days=0)
    old_row = [str(v) if isinstance(v, uuid.UUID) else v for v in item.as_row()]
    old_row[COLUMNS.index("ts")] = int(item.ts.timestamp() * 1_000_000)
    payload = json.dumps([old_row, None]).encode()
    orphan = tmp_path / "spool" / "w-older"
    orphan.mkdir(parents=True)
    (orphan / "000000000001.seg").write_bytes(struct.pack(">II", len(payload), zlib.crc32(payload)) + payload)
    assert decode(payload) == (item, None)
    sink = ClickHouseSink(lambda: connect(clickhouse_url), tmp_path / "spool")
    sink.start()
    assert sink.flush(60)
    sink.close()
    reader = connect(clickhouse_url)
    try:
        rows = reader.query("SELECT request_id, toUnixTimestamp64Milli(ts) FROM requests FINAL").result_rows
    finally:
        reader.close()
    assert rows == [(item.request_id, 1767323045678)]
