"""The ClickHouse sink: batches, lazy writer, retries through an outage, bounded queue."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime

from analytics import schema
from analytics.clickhouse import connect
from analytics.events import COLUMNS, ExchangeEvent
from analytics.sink import ClickHouseSink, MemorySink


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
    )
    values.update(overrides)
    return ExchangeEvent(**values)  # type: ignore[arg-type]


def migrated(url: str) -> None:
    client = connect(url, create_database=True)
    schema.upgrade(client)
    client.close()


def test_events_arrive_in_batches(clickhouse_url: str) -> None:
    migrated(clickhouse_url)
    sink = ClickHouseSink(lambda: connect(clickhouse_url), batch_size=1000, flush_interval=0.2)
    assert sink._thread is None, "no writer thread before the first event (it would not survive a fork)"
    sent = [event(prompt_tokens=i) for i in range(2500)]
    for item in sent:
        sink.emit(item)
    assert sink.flush(30)
    sink.close()
    assert sink.stats.inserted == 2500 and sink.stats.dropped == 0
    reader = connect(clickhouse_url)
    try:
        assert reader.query("SELECT count(), sum(prompt_tokens) FROM requests").result_rows == [
            (2500, sum(range(2500)))
        ]
        (row,) = reader.query(
            "SELECT * FROM requests WHERE request_id = {id:UUID}", parameters={"id": sent[7].request_id}
        ).result_rows
        assert row[COLUMNS.index("ttft_ms")] is None and row[COLUMNS.index("cost_micro_usd")] is None
    finally:
        reader.close()


def test_an_outage_delays_events_but_loses_none(clickhouse_http: str) -> None:
    url = f"{clickhouse_http}/t_{uuid.uuid4().hex[:10]}"
    migrated(url)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}/nothing"
    target = {"url": down}
    sink = ClickHouseSink(lambda: connect(target["url"]), flush_interval=0.05)
    for _ in range(50):
        sink.emit(event())
    assert not sink.flush(1.0), "nothing can be written while ClickHouse is down"
    assert sink.stats.failed_inserts >= 1
    target["url"] = url  # ClickHouse is back
    assert sink.flush(30)
    sink.close()
    assert sink.stats.inserted == 50 and sink.stats.dropped == 0
    reader = connect(url)
    assert reader.query("SELECT count() FROM requests").result_rows == [(50,)]
    reader.close()


def test_a_full_queue_drops_and_counts(clickhouse_http: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}/nothing"
    sink = ClickHouseSink(lambda: connect(down), queue_size=10, flush_interval=0.01)
    for _ in range(100):
        sink.emit(event())
    assert sink.stats.dropped >= 80
    sink.close(timeout=0.5)
    assert sink.stats.inserted == 0


def test_memory_sink_keeps_events() -> None:
    sink = MemorySink()
    item = event()
    sink.emit(item)
    assert sink.flush() and sink.events == [item]
