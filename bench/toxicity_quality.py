"""Precision and recall of a toxicity model on bench/corpus/toxicity.jsonl, and what it costs.

Prints, at the threshold given (the default policy's, 0.5), the share flagged per category (toxic
ones: recall; benign ones: false alarms), overall precision and recall, the share of hard negatives
flagged and the time per text; then the same figures for a sweep of thresholds. The corpus is
written by Warden's authors from templates (bench/toxicity_corpus.py): a measure of text like it.

    python -m bench.toxicity_quality                          # the built-in model
    python -m bench.toxicity_quality --model CKPT --config D  # a Detoxify checkpoint (or ONNX folder)
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from policies.toxicity_model import BUILTIN, load_toxicity_model

CORPUS = Path(__file__).parent / "corpus" / "toxicity.jsonl"
SWEEP = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def rates(rows: list[dict[str, str]], scores: list[float], threshold: float) -> dict[str, float]:
    flagged = [score >= threshold for score in scores]
    toxic = [row["label"] == "toxic" for row in rows]
    true_pos = sum(f and t for f, t in zip(flagged, toxic, strict=True))
    false_pos = sum(f and not t for f, t in zip(flagged, toxic, strict=True))
    hard = [f for f, row in zip(flagged, rows, strict=True) if row["category"] == "hard_negative"]
    return {
        "precision": true_pos / (true_pos + false_pos) if true_pos + false_pos else 1.0,
        "recall": true_pos / sum(toxic),
        "benign_flagged": false_pos / (len(rows) - sum(toxic)),
        "hard_negatives_flagged": sum(hard) / len(hard),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=BUILTIN, help="builtin, a Detoxify checkpoint or an ONNX folder")
    parser.add_argument("--config", default="", help="the checkpoint's base model folder")
    parser.add_argument("--label", default="toxicity", help="the label scored (Detoxify has several)")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--misses", action="store_true", help="print the texts it got wrong")
    args = parser.parse_args()
    model = load_toxicity_model(args.model, args.config)
    rows = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    start = time.perf_counter()
    scores = [model.scores(row["text"])[args.label] for row in rows]
    per_text_ms = (time.perf_counter() - start) / len(rows) * 1e3
    by_category: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for row, score in zip(rows, scores, strict=True):
        by_category[(row["label"], row["category"])].append(score >= args.threshold)
        if args.misses and (score >= args.threshold) != (row["label"] == "toxic"):
            print(f"  {row['label']:6} {score:.2f} {row['text']!r}")
    print(
        f"model {args.model}, label {args.label}, threshold {args.threshold}: {len(rows)} texts, "
        f"{per_text_ms:.3f} ms per text"
    )
    print(f"{'label':7} {'category':14} {'n':>4} {'flagged':>8} {'share':>6}")
    for (label, category), hits in sorted(
        by_category.items(), key=lambda item: (item[0][0] != "toxic", item[0])
    ):
        print(f"{label:7} {category:14} {len(hits):4} {sum(hits):8} {sum(hits) / len(hits):6.2f}")
    header = ("threshold", "precision", "recall", "benign flagged", "hard negatives flagged")
    print("\n" + " ".join(f"{name:>{max(len(name), 6)}}" for name in header))
    for threshold in sorted({*SWEEP, args.threshold}):
        r = rates(rows, scores, threshold)
        mark = "  <- default" if threshold == args.threshold else ""
        print(
            f"{threshold:9.2f} {r['precision']:9.3f} {r['recall']:6.3f} {r['benign_flagged']:14.3f} "
            f"{r['hard_negatives_flagged']:22.3f}{mark}"
        )


if __name__ == "__main__":
    main()
