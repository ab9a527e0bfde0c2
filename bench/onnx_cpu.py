"""Local ONNX model throughput: tokens/s and time to first token at several concurrencies.

Drives `OnnxEngine` directly (no HTTP, no Warden) with greedy requests of a fixed length (eos ignored),
from N threads at once, each cell bounded in time. The tiny random model is built if needed; the demo
model (SmolLM2-135M-Instruct) is measured when `--demo DIR` holds a prepared one (`--prepare-demo` builds
it there first, about 2 minutes on 2 CPUs).

    python bench/onnx_cpu.py [--demo DIR] [--concurrency 1,4] [--seconds 6] [--max-tokens 64]
    python bench/onnx_cpu.py --provider cuda --demo DIR --concurrency 1,8,32 --check-greedy

`--check-greedy` compares greedy answers of the chosen provider with CPU's (exits 1 on a mismatch);
`--provider cuda` exits 1 unless CUDA is the provider really running.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.upstreams.local.build import DEMO_MARKER, build_tiny, prepare_demo  # noqa: E402
from proxy.upstreams.local.engine import OnnxEngine  # noqa: E402
from proxy.upstreams.local.sampling import SamplingParams  # noqa: E402

QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "Write a haiku about the sea.",
    "Explain what a binary search does.",
    "Who wrote Romeo and Juliet?",
    "Give me a tip for learning a language.",
    "What is the boiling point of water?",
    "Describe a cat in one sentence.",
]


@dataclass
class Cell:
    requests: int = 0
    tokens: int = 0
    prompt_tokens: int = 0
    elapsed: float = 0.0
    ttft: list[float] = field(default_factory=list)
    stream_rate: list[float] = field(default_factory=list)  # tokens/s of each request after its first


def run_cell(engine: OnnxEngine, concurrency: int, seconds: float, max_tokens: int) -> Cell:
    prompts = [engine.chat_prompt([{"role": "user", "content": q}]) for q in QUESTIONS]
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    cell, lock = Cell(), threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker(index: int) -> None:
        turn = index
        # Every worker finishes at least one request, so short budgets still measure something.
        while True:
            started = time.perf_counter()
            generation = engine.generate(prompts[turn % len(prompts)], params)
            first = None
            for _ in generation:
                if first is None:
                    first = time.perf_counter()
            done = time.perf_counter()
            with lock:
                cell.requests += 1
                cell.tokens += generation.completion_tokens
                cell.prompt_tokens += generation.prompt_tokens
                cell.ttft.append((first or done) - started)
                if first is not None and done > first:
                    cell.stream_rate.append((generation.completion_tokens - 1) / (done - first))
            turn += concurrency
            if time.perf_counter() >= deadline:
                return

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cell.elapsed = time.perf_counter() - started
    return cell


def check_greedy(engine: OnnxEngine, reference_dir: Path, max_tokens: int) -> bool:
    """Greedy answers of `engine` equal those of a CPU engine on the same model, token for token."""
    reference = OnnxEngine(reference_dir, provider="cpu", max_batch=1)
    ok = True
    try:
        params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
        for question in QUESTIONS[:4]:
            prompt = engine.chat_prompt([{"role": "user", "content": question}])
            got, want = engine.generate_text(prompt, params), reference.generate_text(prompt, params)
            same = got == want
            ok &= same
            print(
                f"greedy {engine.provider} vs cpu: {'same' if same else 'DIFFERENT'}: {question!r} -> {got!r}"
            )
            if not same:
                print(f"  cpu answered {want!r}")
    finally:
        reference.close()
    return ok


def percentile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", type=Path, help="tiny model folder (built there if missing)")
    parser.add_argument("--no-tiny", action="store_true", help="skip the tiny model")
    parser.add_argument("--demo", type=Path, help="prepared demo model folder")
    parser.add_argument("--prepare-demo", action="store_true", help="prepare the demo model in --demo first")
    parser.add_argument("--provider", choices=("cpu", "cuda", "auto"), default="cpu")
    parser.add_argument("--concurrency", default="1,4", help="comma-separated, e.g. 1,8,32")
    parser.add_argument("--seconds", type=float, default=6.0, help="time budget per cell")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-batch", type=int, default=0, help="default: the largest concurrency")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: all cores)")
    parser.add_argument("--check-greedy", action="store_true", help="compare greedy output with CPU's")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    max_batch = args.max_batch or max(levels)

    models: list[tuple[str, Path]] = []
    scratch = tempfile.TemporaryDirectory(prefix="warden-bench-")
    if not args.no_tiny:
        tiny = args.tiny or Path(scratch.name) / "tiny"
        if not (tiny / "model.onnx").exists():
            build_tiny(tiny)
        models.append(("tiny (64d, 2 layers)", tiny))
    if args.demo is not None:
        if args.prepare_demo:
            prepare_demo(args.demo, lambda stage, f: print(f"demo model: {stage}", file=sys.stderr))
        if (args.demo / DEMO_MARKER).exists():
            models.append(("SmolLM2-135M-Instruct", args.demo))
        else:
            print(f"{args.demo} holds no prepared demo model; skipped (use --prepare-demo)", file=sys.stderr)

    rows, ok = [], True
    for label, folder in models:
        try:
            engine = OnnxEngine(
                folder, provider=args.provider, max_batch=max_batch, threads=args.threads or None
            )
        except RuntimeError as exc:  # provider "cuda" where CUDA does not really run
            print(f"FAIL: {exc}", file=sys.stderr)
            return 1
        try:
            if args.provider == "cuda" and engine.provider != "cuda":  # belt and braces: never a CPU figure
                print(f"FAIL: asked for CUDA, running on {engine.provider}", file=sys.stderr)
                return 1
            if args.check_greedy:
                ok &= check_greedy(engine, folder, args.max_tokens)
            engine.generate_text(
                engine.chat_prompt([{"role": "user", "content": "hi"}]),
                SamplingParams(temperature=0.0, max_tokens=4),
            )
            for level in levels:
                cell = run_cell(engine, level, args.seconds, args.max_tokens)
                rows.append(
                    f"| {label} | {engine.provider} | {level} | {cell.requests} | "
                    f"{cell.prompt_tokens / cell.requests:.0f} | {args.max_tokens} | "
                    f"{cell.tokens / cell.elapsed:,.0f} | "
                    f"{statistics.median(cell.stream_rate or [0]):,.0f} | "
                    f"{statistics.median(cell.ttft) * 1000:,.1f} | {percentile(cell.ttft, 99) * 1000:,.1f} |"
                )
                print(rows[-1], file=sys.stderr)
        finally:
            engine.close()
    scratch.cleanup()

    print(
        f"# Local ONNX model — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}), Python {platform.python_version()}, "
        f"load avg {os.getloadavg()[0]:.2f}; greedy, eos ignored, {args.seconds:g} s per cell, "
        f"max_batch {max_batch}\n"
    )
    print(
        "| model | provider | concurrency | requests | prompt tokens | tokens/request | tokens/s (all) "
        "| tokens/s per stream p50 | TTFT p50 ms | TTFT p99 ms |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
