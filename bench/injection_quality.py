"""How well the `injection` scanner separates attacks from benign look-alikes, and what it costs.

Reads bench/corpus/injection.jsonl (one object a line: `label` attack|benign, `family`, `source`
user|tool, `obfuscation`, `text`) and prints the true-positive rate per family and per disguise, the
false-positive rate overall and per source, and the mean time per text. An attack counts as caught
when any family fires (the family is reported, not required to match). The set is written by hand
by the scanner's authors, so the rates are an upper bound for text like it, not a measure in the wild.

bench/corpus/injection_holdout.jsonl is a second, smaller set written after the patterns were tuned
on the first and never tuned on: its rates are the fairer estimate.

    python -m bench.injection_quality [--corpus holdout] [--threshold 0.5] [--misses] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from policies.runtime import ModelPaths, Runtime
from policies.scanners import injection
from policies.scanners.injection import FAMILIES, InjectionScanner

CORPORA = {
    "tuning": Path(__file__).parent / "corpus" / "injection.jsonl",
    "holdout": Path(__file__).parent / "corpus" / "injection_holdout.jsonl",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="tuning")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--misses", action="store_true", help="print the texts it got wrong")
    parser.add_argument("--model", default="", help="an ONNX classifier folder, scored with the patterns")
    parser.add_argument("--model-label", default="injection", help="its label for an injection")
    args = parser.parse_args()
    if args.model:
        runtime = Runtime(ModelPaths(injection_model=args.model))
        scanner = injection.build({"threshold": args.threshold, "model_label": args.model_label}, runtime)
    else:
        scanner = InjectionScanner(args.threshold, FAMILIES)
    rows = [json.loads(line) for line in CORPORA[args.corpus].read_text().splitlines() if line.strip()]
    caught: dict[str, list[bool]] = defaultdict(list)
    wrong: list[str] = []
    elapsed = 0.0
    for row in rows:
        start = time.perf_counter()
        findings = scanner.scan(row["text"])
        elapsed += time.perf_counter() - start
        hit = bool(findings)
        if row["label"] == "attack":
            caught[f"family {row['family']}"].append(hit)
            caught[f"disguise {row['obfuscation'] or 'none'}"].append(hit)
            caught["attacks, all"].append(hit)
        else:
            caught[f"benign {row['source']}"].append(hit)
            caught["benign, all"].append(hit)
        if hit != (row["label"] == "attack"):
            wrong.append(f"{row['label']:6} {[f.kind for f in findings]} {row['text'][:100]!r}")
    per_text_ms = elapsed / len(rows) * 1e3
    print(f"{args.corpus}: threshold {args.threshold}, {len(rows)} texts, {per_text_ms:.3f} ms per text")
    print(f"{'group':34} {'n':>4} {'flagged':>8} {'rate':>6}")
    for group in sorted(caught, key=lambda g: (not g.startswith("attacks"), g.startswith("benign"), g)):
        hits = caught[group]
        rate_name = "FPR" if group.startswith("benign") else "TPR"
        print(f"{group:34} {len(hits):4} {sum(hits):8} {sum(hits) / len(hits):6.3f} {rate_name}")
    if args.misses:
        print("\n".join(["", "wrong:", *wrong]))


if __name__ == "__main__":
    main()
