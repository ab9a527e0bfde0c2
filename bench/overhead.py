"""Proxy overhead: the same requests direct to a fake upstream and through Warden.

Starts a fake OpenAI upstream and `warden serve` (gunicorn, threaded workers, ClickHouse logging on, chDB)
as separate processes on loopback, then drives both with a small asyncio HTTP/1.1 client at
concurrency 1 and 32, JSON and streaming. Added latency = through Warden - direct, per percentile.

    python bench/overhead.py [--seconds 8] [--sequential 400] [--concurrency 32]
                              [--api chat|responses|messages]

--compare-litellm puts LiteLLM's proxy (pinned, bench/litellm_proxy.py) beside Warden, in front of the
same fake upstream, each with one worker: litellm --num_workers 1 (uvicorn, a master key, no database,
its GitHub lookups turned off) and warden serve --workers 1 with its defaults (default policy, chDB
logging, encrypted transcripts). Each round measures direct, Warden and LiteLLM back to back for JSON
at concurrency 1, streams at concurrency 1 (TTFT), JSON and streams at --concurrency (requests/s), the
proxies' order alternating between rounds; the table gives medians over the rounds of added p50/p99 and
TTFT (through - direct, per round), requests/s, CPU per request (each server's process tree) and resident
memory (RSS summed over the tree), against the goals of issue 16, and the run is written to
bench/results/overhead-litellm-*.json. LiteLLM is installed once into its own venv (--litellm-venv,
default var/bench/litellm-venv); a run with the defaults takes about 5 minutes, LiteLLM's start included.

    python bench/overhead.py --compare-litellm [--rounds 3] [--seconds 8] [--sequential 400]
                              [--litellm-venv PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import psutil
from loopback import WARDEN, free_port, start_warden, wait_http

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Sample:
    latency: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    overhead_header: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0
    cpu_per_request: float = 0.0


class Connection:
    """A keep-alive HTTP/1.1 connection that understands content-length and chunked replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> None:
        self.reader, self.writer, self.head = reader, writer, head

    @classmethod
    async def open(cls, port: int, path: str, key: str | None) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        if key:
            head += f"Authorization: Bearer {key}\r\n"
        return cls(reader, writer, head.encode())

    async def request(self, body: bytes) -> tuple[int, float, float, float | None]:
        started = time.perf_counter()
        self.writer.write(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            if b":" in line:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
        first: float | None = None
        if b"content-length" in headers:
            await self.reader.readexactly(int(headers[b"content-length"]))
            first = time.perf_counter()
        else:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                chunk = await self.reader.readexactly(size + 2)
                if first is None and b"data:" in chunk:
                    first = time.perf_counter()
        done = time.perf_counter()
        overhead = headers.get(b"x-warden-overhead-ms")
        return status, done - started, (first or done) - started, float(overhead) if overhead else None

    def close(self) -> None:
        self.writer.close()


async def run_load(
    port: int, path: str, key: str | None, body: bytes, concurrency: int, seconds: float, max_requests: int
) -> Sample:
    sample = Sample()
    deadline = time.perf_counter() + seconds
    sent = 0

    base = body

    async def worker() -> None:
        nonlocal sent
        body = base
        conn = await Connection.open(port, path, key)
        try:
            while time.perf_counter() < deadline and sent < max_requests:
                sent += 1
                if UNIQUE_PROMPTS:
                    body = base.replace(PROMPT_BYTES, PROMPT_BYTES + b" #%d" % sent, 1)
                status, latency, ttft, overhead = await conn.request(body)
                if status != 200:
                    sample.errors += 1
                    continue
                sample.latency.append(latency)
                sample.ttft.append(ttft)
                if overhead is not None:
                    sample.overhead_header.append(overhead / 1000)
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    sample.elapsed = time.perf_counter() - started
    return sample


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (the gunicorn workers)."""
    total = 0.0
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for each in [str(pid), *children]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


PROMPT = "Say something short."
PROMPT_BYTES = PROMPT.encode()
UNIQUE_PROMPTS = False  # --unique-prompts
# client API -> (path, model answered natively, request without model)
API_REQUESTS: dict[str, tuple[str, str, dict[str, object]]] = {
    "chat": ("/v1/chat/completions", "gpt-fake", {"messages": [{"role": "user", "content": PROMPT}]}),
    "responses": ("/v1/responses", "gpt-fake", {"input": PROMPT}),
    "messages": (
        "/v1/messages",
        "claude-fake",
        {"max_tokens": 64, "messages": [{"role": "user", "content": PROMPT}]},
    ),
}


def start_fake_upstream(port: int, chunks: int) -> subprocess.Popen:
    fake = subprocess.Popen(
        [*WARDEN, "fake-upstream", "--port", str(port), "--chunks", str(chunks), "--words", "24"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", fake)
    except BaseException:
        stop(fake)
        raise
    return fake


def stop(process: subprocess.Popen, grace: float = 20) -> None:
    """End a server this benchmark started: its whole process group when it leads one, SIGKILL after
    `grace` seconds."""
    if process.poll() is not None:
        return
    try:
        group = os.getpgid(process.pid) == process.pid
    except ProcessLookupError:
        return

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig) if group else process.send_signal(sig)

    send(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait(10)


def logged_rows(work: Path) -> str:
    """Rows Warden wrote to its chDB (opened once Warden has stopped: chDB allows one process)."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import clickhouse_connect as c; print(c.get_client(dsn='chdb://"
            + str(work / "clickhouse")
            + "').query('SELECT count() FROM requests').result_rows[0][0])",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.strip()


def machine_line() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"load avg {os.getloadavg()[0]:.2f}"
    )


# --compare-litellm ------------------------------------------------------------------------------------

SERVERS = ("direct", "warden", "litellm")


@dataclass
class Target:
    """Where one server answers; `process` roots the tree whose CPU and memory are counted."""

    port: int
    key: str | None
    process: subprocess.Popen | None


def process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a server and every process under it (gunicorn's workers too)."""
    total = 0.0
    for process in process_tree(pid):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


@dataclass
class Memory:
    """Resident memory of a server's processes, in MiB: RSS per process (pages shared after fork
    counted in each), PSS summed (shared pages divided among the processes that share them), and the
    largest process that serves requests (for Warden a gunicorn worker, not its master or the local
    ClickHouse process it supervises)."""

    rss_mib: list[tuple[str, float]]
    rss_sum_mib: float
    pss_sum_mib: float
    serving_mib: float


def tree_memory(pid: int) -> Memory:
    rss: list[tuple[str, float]] = []
    pss = 0.0
    for process in process_tree(pid):
        try:
            info = process.memory_full_info()
            command = " ".join(process.cmdline())
        except psutil.NoSuchProcess:
            continue
        role = "ClickHouse" if "chdb_server" in command else ("main" if process.pid == pid else "worker")
        rss.append((role, info.rss / 2**20))
        pss += info.pss / 2**20
    workers = [mib for role, mib in rss if role == "worker"] or [mib for role, mib in rss if role == "main"]
    return Memory(rss, sum(mib for _, mib in rss), pss, max(workers))


def measure(
    target: Target, body: bytes, concurrency: int, seconds: float, limit: int, bound: float
) -> Sample:
    """One load run, CPU counted over the server's tree; `bound` seconds at most, or the run stops."""
    before = tree_cpu(target.process.pid) if target.process else 0.0
    try:
        sample = asyncio.run(
            asyncio.wait_for(
                run_load(target.port, "/v1/chat/completions", target.key, body, concurrency, seconds, limit),
                bound,
            )
        )
    except TimeoutError:
        raise SystemExit(f"a run against port {target.port} took longer than {bound:.0f} s") from None
    if target.process:
        sample.cpu_per_request = (tree_cpu(target.process.pid) - before) / max(len(sample.latency), 1)
    if not sample.latency:
        raise SystemExit(f"no request against port {target.port} succeeded ({sample.errors} errors)")
    return sample


def summary(sample: Sample) -> dict[str, float]:
    return {
        "requests": len(sample.latency),
        "errors": sample.errors,
        "p50_ms": pct(sample.latency, 50) * 1000,
        "p99_ms": pct(sample.latency, 99) * 1000,
        "ttft_p50_ms": pct(sample.ttft, 50) * 1000,
        "requests_per_s": len(sample.latency) / sample.elapsed,
        "cpu_ms_per_request": sample.cpu_per_request * 1000,
    }


def ratio_text(warden: float, litellm: float, times: bool) -> str:
    if not (litellm > 0 and warden == warden and litellm == litellm):
        return "n/a"
    if warden <= 0:
        return "≤ 0"
    ratio = warden / litellm
    if times:
        return f"{ratio:.1f}x"
    return f"1/{1 / ratio:.1f}" if ratio < 1 else f"{ratio:.2f}"


def compare_litellm(args: argparse.Namespace) -> None:
    import litellm_proxy

    script, version = litellm_proxy.ensure_venv(args.litellm_venv.resolve())
    work = Path(tempfile.mkdtemp(prefix="warden-bench-litellm-"))
    up_port, warden_port, litellm_port = free_port(), free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}/v1"
    model = "gpt-fake"
    procs: list[subprocess.Popen] = []
    started = time.monotonic()
    tests = (
        ("json", 1),
        ("stream", 1),
        ("json", args.concurrency),
        ("stream", args.concurrency),
    )
    results: dict[str, dict[str, list[dict[str, float]]]] = {
        f"{kind} c={c}": {name: [] for name in SERVERS} for kind, c in tests
    }
    memory: dict[str, Memory] = {}
    logs: list[IO[str]] = []
    try:
        procs.append(start_fake_upstream(up_port, args.chunks))
        warden_log = (work / "warden.log").open("w")
        litellm_log = (work / "litellm.log").open("w")
        logs += [warden_log, litellm_log]
        warden, key = start_warden(
            work,
            upstream,
            warden_port,
            warden_log,
            session=True,
            server={"threads": args.threads, "workers": 1},
        )
        procs.append(warden)
        config = work / "litellm.yaml"
        litellm_proxy.write_config(config, model, upstream)
        litellm = litellm_proxy.start(script, config, litellm_port, litellm_log, work)
        procs.append(litellm)
        # LiteLLM imports for a while (15 s on an idle 2-core machine) before it listens.
        wait_http(f"http://127.0.0.1:{litellm_port}/health/liveliness", litellm, seconds=300)
        targets = {
            "direct": Target(up_port, None, None),
            "warden": Target(warden_port, key, warden),
            "litellm": Target(litellm_port, litellm_proxy.MASTER_KEY, litellm),
        }
        print(f"servers up in {time.monotonic() - started:.0f} s; warming up", flush=True)
        bodies = {
            kind: json.dumps(
                {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
                | ({"stream": True} if kind == "stream" else {})
            ).encode()
            for kind in ("json", "stream")
        }
        # First requests pay for imports, connection pools and chDB's first insert; keep them out.
        warm = 0
        for name, target in targets.items():
            for body in bodies.values():
                sample = measure(target, body, 4, 2.0, 100, 120)
                warm += (len(sample.latency) + sample.errors) if name == "warden" else 0
        for round_ in range(args.rounds):
            # Direct first, then the two proxies in alternating order, so neither always runs second.
            order = ("direct", "warden", "litellm") if round_ % 2 == 0 else ("direct", "litellm", "warden")
            for kind, concurrency in tests:
                sequential = concurrency == 1
                seconds = 600.0 if sequential else args.seconds
                limit = args.sequential if sequential else 10**9
                bound = 300.0 if sequential else args.seconds + 60
                for name in order:
                    sample = measure(targets[name], bodies[kind], concurrency, seconds, limit, bound)
                    results[f"{kind} c={concurrency}"][name].append(summary(sample))
            print(f"round {round_ + 1}/{args.rounds} done at {time.monotonic() - started:.0f} s", flush=True)
        for name in ("warden", "litellm"):
            memory[name] = tree_memory(targets[name].process.pid)  # type: ignore[union-attr]
        stop(warden, grace=60)  # it flushes its spool into chDB first
        logged = logged_rows(work)
    except BaseException:
        print(f"stopped; the servers' logs are in {work}", file=sys.stderr)
        raise
    finally:
        for process in procs:
            stop(process)
        for log in logs:
            log.close()
    elapsed = time.monotonic() - started

    def added(test: str, name: str, field_: str) -> float:
        per_round = zip(results[test][name], results[test]["direct"], strict=True)
        return statistics.median(via[field_] - direct[field_] for via, direct in per_round)

    def med(test: str, name: str, field_: str) -> float:
        return statistics.median(r[field_] for r in results[test][name])

    high = f"c={args.concurrency}"
    values: list[tuple[str, str, float, float, str, bool | None, bool]] = []

    def row(label: str, unit: str, measure_: str, goal: str, met: bool | None, times: bool = False) -> None:
        values.append((label, unit, litellm_value[measure_], warden_value[measure_], goal, met, times))

    litellm_value: dict[str, float] = {}
    warden_value: dict[str, float] = {}
    for name, into in (("litellm", litellm_value), ("warden", warden_value)):
        into["p50"] = added("json c=1", name, "p50_ms")
        into["p99"] = added("json c=1", name, "p99_ms")
        into["ttft"] = added("stream c=1", name, "ttft_p50_ms")
        into["json_rps"] = med(f"json {high}", name, "requests_per_s")
        into["stream_rps"] = med(f"stream {high}", name, "requests_per_s")
        into["cpu"] = med(f"json {high}", name, "cpu_ms_per_request")
        into["rss"] = memory[name].serving_mib
        into["tree"] = memory[name].rss_sum_mib
    lv, wv = litellm_value, warden_value
    row("JSON, concurrency 1, added p50", "ms", "p50", "≤ 1/16", wv["p50"] <= lv["p50"] / 16)
    row("JSON, concurrency 1, added p99", "ms", "p99", "≤ 1/10", wv["p99"] <= lv["p99"] / 10)
    row(
        f"stream ({args.chunks} events), c=1, added TTFT p50",
        "ms",
        "ttft",
        "≤ 1/10",
        wv["ttft"] <= lv["ttft"] / 10,
    )
    row(
        f"JSON, concurrency {args.concurrency}, requests/s",
        "",
        "json_rps",
        "≥ 8x",
        wv["json_rps"] >= 8 * lv["json_rps"],
        True,
    )
    row(
        f"stream, concurrency {args.concurrency}, requests/s",
        "",
        "stream_rps",
        "≥ 10x",
        wv["stream_rps"] >= 10 * lv["stream_rps"],
        True,
    )
    row(f"CPU per request, JSON {high}", "ms", "cpu", "≤ 0.9 ms", wv["cpu"] <= 0.9)
    row("resident memory of the serving process", "MiB", "rss", "≤ LiteLLM's", wv["rss"] <= lv["rss"])
    row("resident memory, every process (RSS summed)", "MiB", "tree", "", None)

    def show(value: float, unit: str) -> str:
        if unit == "MiB":
            return f"{value:.0f} MiB"
        return f"{value:.2f} ms" if unit == "ms" else f"{value:.0f}"

    print()
    print(f"# Warden vs LiteLLM proxy overhead — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"# machine: {machine_line()}; {args.rounds} interleaved rounds, medians; run took {elapsed:.0f} s\n"
        f"# Warden: warden serve, 1 worker x {args.threads} threads, default policy, chDB logging, encrypted "
        f"transcripts; LiteLLM {version}: litellm --num_workers 1 (uvicorn), master "
        f"key, no database; fake upstream: 24 words, {args.chunks} SSE events; load generator, upstream and "
        "both proxies share the machine"
    )
    print()
    print("| | LiteLLM | Warden | ratio | goal | met |")
    print("|---|---|---|---|---|---|")
    for label, unit, lite, ward, goal, met, times in values:
        print(
            f"| {label} | {show(lite, unit)} | {show(ward, unit)} | {ratio_text(ward, lite, times)} | {goal} "
            f"| {'' if met is None else 'yes' if met else 'no'} |"
        )
    warden_memory, litellm_memory = memory["warden"], memory["litellm"]

    def each(parts: list[tuple[str, float]]) -> str:
        return " + ".join(f"{value:.0f} ({role})" for role, value in parts)

    print(
        "\nadded = through the proxy - direct, per round, then the median. Memory after the rounds: the "
        "serving process is the largest one that answers requests (Warden's gunicorn worker); RSS per "
        f"process: Warden {each(warden_memory.rss_mib)} MiB, LiteLLM {each(litellm_memory.rss_mib)} MiB; "
        "PSS summed, which counts "
        f"pages shared after fork once: Warden {warden_memory.pss_sum_mib:.0f} MiB, "
        f"LiteLLM {litellm_memory.pss_sum_mib:.0f} MiB"
    )
    print()
    print("| test | server | p50 ms | p99 ms | TTFT p50 ms | req/s | CPU ms/req | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for test, by_server in results.items():
        for name in SERVERS:
            errors = sum(int(r["errors"]) for r in by_server[name])
            cpu = "" if name == "direct" else f"{med(test, name, 'cpu_ms_per_request'):.2f}"
            ttft = f"{med(test, name, 'ttft_p50_ms'):.2f}" if test.startswith("stream") else ""
            print(
                f"| {test} | {name} | {med(test, name, 'p50_ms'):.2f} | {med(test, name, 'p99_ms'):.2f} | "
                f"{ttft} | {med(test, name, 'requests_per_s'):.0f} | {cpu} | {errors} |"
            )
    sent = sum(r["requests"] + r["errors"] for by in results.values() for r in by["warden"])
    print(f"\nrows logged in Warden's ClickHouse: {logged} (sent through Warden: {sent} + {warm} warm-up)")

    out = ROOT / "bench" / "results" / f"overhead-litellm-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "overhead --compare-litellm",
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine_line(),
                "seconds_taken": round(elapsed, 1),
                "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "litellm_version": version,
                "table": [
                    {"row": label, "unit": unit, "litellm": lite, "warden": ward, "goal": goal, "met": met}
                    for label, unit, lite, ward, goal, met, _ in values
                ],
                "rounds": results,
                "memory_mib": {name: asdict(each) for name, each in memory.items()},
                "warden_rows_logged": int(logged),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"results: {out.relative_to(ROOT)}")


def interrupted(signum: int, _frame: object) -> None:
    """Ctrl-C and SIGTERM end the run through the finally blocks that stop every server it started.
    Being handled here, not by asyncio.run's own SIGINT handler, they also stop a load run at once
    (asyncio turns SIGINT into a cancellation, which a load run finishing at that moment can swallow)."""
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    sys.exit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each concurrent run")
    parser.add_argument("--sequential", type=int, default=400, help="requests per concurrency-1 run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--chunks", type=int, default=16, help="SSE events per streamed reply")
    parser.add_argument("--threads", type=int, default=64, help="gunicorn threads for Warden")
    parser.add_argument(
        "--api",
        choices=("chat", "responses", "messages"),
        default="chat",
        help="the client API; responses and messages are measured at concurrency 1, passed through to an "
        "upstream that speaks it and translated to an upstream that speaks only chat completions",
    )
    parser.add_argument(
        "--limits",
        metavar="REDIS_URL",
        help="also enforce a key limit (rpm, tpm, concurrent) and a team budget, kept in this Redis "
        "(never refusing: what admission and settlement cost)",
    )
    parser.add_argument(
        "--compare-litellm",
        action="store_true",
        help="measure direct, Warden (1 worker) and LiteLLM's proxy (1 worker) interleaved, in rounds, "
        "and print the side-by-side table (chat API only)",
    )
    parser.add_argument(
        "--litellm-venv",
        type=Path,
        default=ROOT / "var" / "bench" / "litellm-venv",
        help="venv holding LiteLLM's proxy; created and installed into when it has no litellm",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds with --compare-litellm")
    parser.add_argument(
        "--unique-prompts",
        action="store_true",
        help="number every request's prompt, so no text repeats: Warden scans each one (by default the "
        "same prompt repeats and, being clean, is scanned once; see policies.clean_text_memo)",
    )
    args = parser.parse_args()
    global UNIQUE_PROMPTS
    UNIQUE_PROMPTS = args.unique_prompts
    if args.compare_litellm and (
        args.api != "chat" or args.limits or args.concurrency < 2 or args.rounds < 1
    ):
        parser.error("--compare-litellm measures the chat API without --limits, at a --concurrency above 1")
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    if args.compare_litellm:
        compare_litellm(args)
        return

    work = Path(tempfile.mkdtemp(prefix="warden-bench-"))
    up_port, warden_port = free_port(), free_port()
    procs: list[subprocess.Popen] = []
    try:
        fake = start_fake_upstream(up_port, args.chunks)
        procs.append(fake)
        log = (work / "serve.log").open("w")
        upstream = f"http://127.0.0.1:{up_port}/v1"
        upstreams = [
            {"name": "fake", "type": "openai", "base_url": upstream, "models": ["gpt-fake"]},
            {"name": "claude", "type": "anthropic", "base_url": upstream, "models": ["claude-fake"]},
            {
                "name": "chat-only",
                "type": "openai",
                "base_url": upstream,
                "models": ["chat-fake"],
                "apis": ["chat.completions"],
            },
        ]
        traffic: dict[str, object] = {}
        if args.limits:
            traffic = {
                "limits": [{"scope": "key", "rpm": 10**7, "tpm": 10**10, "concurrent": 10**4}],
                "budgets": [{"scope": "team", "period": "day", "hard_usd": 10**6}],
                "prices": {
                    m: {"input": 0.15, "output": 0.6} for m in ("gpt-fake", "claude-fake", "chat-fake")
                },
                "traffic": {"key_prefix": f"warden-bench:{os.getpid()}:"},
            }
        server, key = start_warden(
            work,
            upstream,
            warden_port,
            log,
            session=True,
            server={"threads": args.threads},
            upstreams=upstreams,
            **traffic,
            **({"storage": {"redis_url": args.limits}} if args.limits else {}),
        )
        procs.append(server)

        path, native_model, request = API_REQUESTS[args.api]
        modes = (
            {"pass-through": native_model}
            if args.api == "chat"
            else {
                "pass-through": native_model,
                "translated": "chat-fake",
            }
        )
        concurrencies = (1, args.concurrency) if args.api == "chat" else (1,)
        rows = []
        for mode, model in modes.items():
            for kind in ("json", "stream"):
                streamed = {"stream": True} if kind == "stream" else {}
                body = json.dumps({**request, "model": model, **streamed}).encode()
                # The direct baseline is the same API answered natively by the upstream.
                direct_body = json.dumps({**request, "model": native_model, **streamed}).encode()
                for concurrency in concurrencies:
                    seconds = 600.0 if concurrency == 1 else args.seconds
                    limit = args.sequential if concurrency == 1 else 10**9
                    # Warm both paths (connection pools, first chDB insert) before measuring.
                    asyncio.run(run_load(up_port, path, None, direct_body, 4, 1.0, 50))
                    asyncio.run(run_load(warden_port, path, key, body, 4, 1.0, 50))
                    direct = asyncio.run(
                        run_load(up_port, path, None, direct_body, concurrency, seconds, limit)
                    )
                    cpu_before = cpu_seconds(server.pid)
                    via = asyncio.run(run_load(warden_port, path, key, body, concurrency, seconds, limit))
                    via.cpu_per_request = (cpu_seconds(server.pid) - cpu_before) / max(len(via.latency), 1)
                    rows.append((f"{args.api} {mode} {kind}", concurrency, direct, via))
        stop(server, grace=60)
        log.close()
        logged = logged_rows(work)
    finally:
        for process in procs:
            stop(process)

    print(f"# Warden proxy overhead — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"# machine: {machine_line()}; Warden: gunicorn gthread 1 worker x {args.threads} threads, "
        f"ClickHouse logging on (chDB); fake upstream: 24 words, {args.chunks} SSE events"
    )
    print()
    header = (
        "| kind | conc | requests | direct p50 ms | via p50 ms | added p50 ms | added p99 ms "
        "| added TTFT p50 ms | self-reported p50 ms | Warden CPU ms/req "
        "| direct req/s | Warden req/s | errors |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for kind, concurrency, direct, via in rows:
        added50 = (pct(via.latency, 50) - pct(direct.latency, 50)) * 1000
        added99 = (pct(via.latency, 99) - pct(direct.latency, 99)) * 1000
        ttft = (pct(via.ttft, 50) - pct(direct.ttft, 50)) * 1000 if kind.endswith("stream") else float("nan")
        print(
            f"| {kind} | {concurrency} | {len(via.latency)} | {pct(direct.latency, 50) * 1000:.2f} | "
            f"{pct(via.latency, 50) * 1000:.2f} | {added50:.2f} | {added99:.2f} | "
            f"{'' if kind.endswith('json') else f'{ttft:.2f}'} | "
            f"{statistics.median(via.overhead_header) * 1000 if via.overhead_header else float('nan'):.3f} | "
            f"{via.cpu_per_request * 1000:.2f} | "
            f"{len(direct.latency) / direct.elapsed:.0f} | {len(via.latency) / via.elapsed:.0f} | "
            f"{direct.errors + via.errors} |"
        )
    sent = sum(len(v.latency) + v.errors for _, _, _, v in rows)
    print(f"\nrows logged in ClickHouse: {logged} (requests through Warden incl. warm-up: {sent + 4 * 50})")


if __name__ == "__main__":
    main()
