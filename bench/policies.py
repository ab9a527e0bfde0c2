"""Policy scanner costs, toxicity on PyTorch vs ONNX, and the added time-to-first-token of a stream
with PII on output.

    python bench/policies.py [--skip-toxicity] [--skip-stream] [--models DIR]

Prints markdown tables. The toxicity model is a BERT-base-sized checkpoint with RANDOM weights
(built once under --models, ~440 MB): the same compute as Detoxify's `original` model, meaningless
scores. The stream part starts a fake upstream that sends one event every --chunk-delay-ms
(a model generating at that pace) and two Warden servers, one with PII scanning on the output.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loopback import free_port, start_warden, wait_http  # noqa: E402

from policies.document import parse_policy  # noqa: E402
from policies.engine import CompiledPolicy  # noqa: E402
from policies.runtime import Runtime  # noqa: E402
from policies.scanners import checkers  # noqa: E402

PROSE = (
    "Could you summarise the quarterly report for the board and keep it short? Focus on revenue, "
    "churn and the hiring plan, and leave out anything that is still a draft. Thank you very much!! "
)
ONE_ENTITY = (
    "Hi, please draft a polite reply to the customer who wrote to support@example.com about a late "
    "delivery, apologise for the delay and offer a discount on the next order. Keep it under 120 words."
)
ENTITIES = (
    "Contact jane.doe@example.com or +1 415-555-0132; card 4111 1111 1111 1111; "
    "IBAN DE89 3704 0044 0532 0130 00; host 10.1.2.3; ssn 536-22-8726. "
)


def sized(text: str, n: int) -> str:
    return (text * (n // len(text) + 1))[:n]


def timed(call, *, seconds: float = 1.5, at_least: int = 20) -> float:  # type: ignore[no-untyped-def]
    """Median ms per call, over batches for at most `seconds`."""
    call()
    samples = []
    deadline = time.perf_counter() + seconds
    while len(samples) < at_least or time.perf_counter() < deadline:
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
        if len(samples) >= 2000:
            break
    return statistics.median(samples)


def scanner_table() -> None:
    runtime = Runtime()
    rules = {
        "pii (patterns, default entities)": "{scanner: pii, action: mask}",
        "secrets": "{scanner: secrets, action: block}",
        "terms (20 words + 1 regex)": "{scanner: terms, action: block, params: {words: ["
        + ", ".join(f"word{i}" for i in range(20))
        + "], regex: ['(?i)ignore (all )?previous instructions']}}",
    }
    print("\n### Scanner cost (ms per scan, median, 2 CPUs)\n")
    print("| scanner | prose 200 | prose 2,000 | one e-mail 200 | 6 entities 200 | 60 entities 2,000 |")
    print("|---|---|---|---|---|---|")
    for name, rule in rules.items():
        text = f"apiVersion: warden/v1\nmetadata: {{name: b, version: '1'}}\nrules:\n  input:\n    - {rule}\n"
        policy = CompiledPolicy(parse_policy(text, "bench.yaml", checkers()), runtime)
        cells = []
        for sample, n in ((PROSE, 200), (PROSE, 2000), (ONE_ENTITY, 200), (ENTITIES, 200), (ENTITIES, 2000)):
            body = sized(sample, n)
            cells.append(f"{timed(lambda b=body, p=policy: p.scan('input', b)):.3f}")
        print(f"| {name} | {' | '.join(cells)} |")


def toxicity_table(models: Path) -> None:
    from policies.model_builders import build_detoxify_checkpoint
    from policies.toxicity_model import OnnxToxicity, TorchToxicity, export_onnx

    base = models / "toxicity-base"
    checkpoint = base / "model.ckpt"
    if not checkpoint.exists():
        print(f"building a BERT-base-sized random checkpoint in {base} ...", file=sys.stderr)
        build_detoxify_checkpoint(base, "base")
    for name, int8 in (("onnx-fp32", False), ("onnx-int8", True)):
        if not (models / name / "model.onnx").exists():
            print(f"exporting {name} ...", file=sys.stderr)
            export_onnx(str(checkpoint), "", str(models / name), int8=int8)
    engines = {
        "PyTorch fp32": TorchToxicity(str(checkpoint)),
        "ONNX fp32": OnnxToxicity(str(models / "onnx-fp32")),
        "ONNX int8": OnnxToxicity(str(models / "onnx-int8")),
    }
    torch_model = engines["PyTorch fp32"]
    words = [w for w in torch_model.tokenizer.get_vocab() if w.isalpha() and len(w) > 3][:600]
    texts = {}
    for tokens in (32, 128, 512):
        text = " ".join(words[: tokens - 2])
        texts[tokens] = text
        assert len(torch_model.tokenizer(text)["input_ids"]) == tokens, "one word per token expected"
    print("\n### Toxicity (BERT-base size, ms per text, median, 2 CPUs)\n")
    print("| backend | 32 tokens | 128 tokens | 512 tokens |")
    print("|---|---|---|---|")
    for name, engine in engines.items():
        cells = [
            f"{timed(lambda t=texts[n], e=engine: e.scores(t), seconds=3, at_least=5):.1f}"
            for n in (32, 128, 512)
        ]
        print(f"| {name} | {' | '.join(cells)} |")
    ref = torch_model.scores(texts[128])
    for name in ("ONNX fp32", "ONNX int8"):
        other = engines[name].scores(texts[128])
        diff = max(abs(ref[k] - other[k]) for k in ref)
        print(f"\n{name}: largest score difference from PyTorch on 128 tokens: {diff:.2e}")


def stream_table(chunk_delay_ms: float, runs: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="warden-bench-policies-"))
    warden = [sys.executable, "-m", "proxy.cli"]
    up_port = free_port()
    procs: list[subprocess.Popen] = []
    output_policy = work / "pii-output.yaml"
    output_policy.write_text(
        "apiVersion: warden/v1\nmetadata: {name: pii-output, version: '1'}\nextends: default\n"
        "rules:\n  output:\n    - {id: pii-out, scanner: pii, action: mask}\n"
    )
    try:
        procs.append(
            subprocess.Popen(
                [
                    *warden,
                    "fake-upstream",
                    "--port",
                    str(up_port),
                    "--chunks",
                    "40",
                    "--words",
                    "60",
                    "--chunk-delay-ms",
                    str(chunk_delay_ms),
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_http(f"http://127.0.0.1:{up_port}/v1/models", procs[0])
        servers = {}
        for label, files in (("default policy (input only)", []), ("+ pii on output", [str(output_policy)])):
            port = free_port()
            server, key = start_warden(
                work / str(port), f"http://127.0.0.1:{up_port}/v1", port, policies={"files": files}
            )
            procs.append(server)
            servers[label] = (port, key)
        body = {
            "model": "gpt-fake",
            "stream": True,
            "messages": [{"role": "user", "content": "Tell me a story."}],
        }
        results = {"direct": measure(f"http://127.0.0.1:{up_port}/v1", None, body, runs)}
        for label, (port, key) in servers.items():
            results[label] = measure(f"http://127.0.0.1:{port}/v1", key, body, runs)
        print(f"\n### Streamed answer, 60 words in 40 events, one event every {chunk_delay_ms:g} ms\n")
        print("| path | first content p50 ms | added vs direct | last byte p50 ms |")
        print("|---|---|---|---|")
        base_ttft = results["direct"][0]
        for label, (ttft, total) in results.items():
            added = "" if label == "direct" else f"{ttft - base_ttft:+.1f}"
            print(f"| {label} | {ttft:.1f} | {added} | {total:.1f} |")
    finally:
        for process in procs:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()


def measure(base: str, key: str | None, body: dict, runs: int) -> tuple[float, float]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    firsts, totals = [], []
    with httpx.Client(timeout=30) as client:
        for index in range(runs + 2):
            start = time.perf_counter()
            first = None
            with client.stream("POST", f"{base}/chat/completions", json=body, headers=headers) as reply:
                for line in reply.iter_lines():
                    if first is None and line.startswith("data: {"):
                        choices = json.loads(line[6:]).get("choices") or [{}]
                        if (choices[0].get("delta") or {}).get("content"):
                            first = time.perf_counter() - start
            if index >= 2:  # two warm-ups
                firsts.append((first or 0) * 1000)
                totals.append((time.perf_counter() - start) * 1000)
    return statistics.median(firsts), statistics.median(totals)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, default=ROOT / "var" / "bench-models")
    parser.add_argument("--skip-toxicity", action="store_true")
    parser.add_argument("--skip-stream", action="store_true")
    parser.add_argument("--chunk-delay-ms", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    scanner_table()
    if not args.skip_toxicity:
        toxicity_table(args.models)
    if not args.skip_stream:
        stream_table(args.chunk_delay_ms, args.runs)


if __name__ == "__main__":
    main()
