"""PII detection quality: Warden's default `pii` rule against plain Presidio on a labelled corpus.

The corpus (`bench/corpus/pii/corpus.jsonl`, made by `bench/pii_corpus.py`) holds PII values with their
character spans, hard negatives (timestamps, versions, order numbers...) and clean prompts.

Matching rule: a labelled value is found when a finding of the same entity overlaps at least half of its
characters. A finding is correct when it overlaps a labelled value of its entity at all; any other finding
is a false positive (precision counts every finding over the whole corpus). A hard negative is flagged
when any finding lands in it.

Plain Presidio is `AnalyzerEngine` with its predefined recognizers on the same blank spaCy pipeline, asked
for the same six entities at the same threshold; only its e-mail recognizer is swapped for the offline one
(the same check on the bundled suffix list: the stock one would fetch the list).

    python bench/pii_quality.py [--corpus PATH] [--every N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from policies.runtime import Runtime  # noqa: E402
from policies.scanners import pii  # noqa: E402

CORPUS = ROOT / "bench" / "corpus" / "pii" / "corpus.jsonl"
Span = tuple[int, int, str]


@dataclass
class Tally:
    labelled: dict[str, int] = field(default_factory=dict)
    found: dict[str, int] = field(default_factory=dict)
    findings: dict[str, int] = field(default_factory=dict)
    correct: dict[str, int] = field(default_factory=dict)
    negatives: int = 0
    negatives_flagged: int = 0

    def add(self, kind: str, labels: list[Span], spans: list[Span]) -> None:
        for start, end, entity in labels:
            self.labelled[entity] = self.labelled.get(entity, 0) + 1
            if any(e == entity and min(end, fe) - max(start, fs) >= (end - start) / 2 for fs, fe, e in spans):
                self.found[entity] = self.found.get(entity, 0) + 1
        for start, end, entity in spans:
            self.findings[entity] = self.findings.get(entity, 0) + 1
            if any(e == entity and min(end, le) > max(start, ls) for ls, le, e in labels):
                self.correct[entity] = self.correct.get(entity, 0) + 1
        if kind == "negative":
            self.negatives += 1
            self.negatives_flagged += bool(spans)

    def recall(self, entity: str | None = None) -> float:
        keys = [entity] if entity else list(self.labelled)
        total = sum(self.labelled.get(k, 0) for k in keys)
        return sum(self.found.get(k, 0) for k in keys) / total if total else 1.0

    def precision(self, entity: str | None = None) -> float:
        keys = [entity] if entity else list(self.findings)
        total = sum(self.findings.get(k, 0) for k in keys)
        return sum(self.correct.get(k, 0) for k in keys) / total if total else 1.0

    def flagged(self) -> float:
        return self.negatives_flagged / self.negatives if self.negatives else 0.0


def load(path: Path = CORPUS, every: int = 1) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[::every]]


def warden_detector(runtime: Runtime | None = None) -> Callable[[str], list[Span]]:
    """The default policy's `pii` rule, built as the proxy builds it."""
    document = yaml.safe_load((ROOT / "policies" / "default.yaml").read_text())
    rule = next(r for r in document["rules"]["input"] if r["id"] == "pii")
    scanner = pii.build(rule.get("params") or {}, runtime or Runtime())
    return lambda text: [(f.start, f.end, f.kind) for f in scanner.scan(text)]


def presidio_detector(runtime: Runtime | None = None) -> Callable[[str], list[Span]]:
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry

    engine = (runtime or Runtime()).pii_engine()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"])
    registry.remove_recognizer("EmailRecognizer")
    registry.add_recognizer(pii._offline_email_recognizer())
    analyzer = AnalyzerEngine(
        registry=registry, nlp_engine=engine._analyzer.nlp_engine, supported_languages=["en"]
    )
    entities = list(pii.DEFAULT_ENTITIES)

    def detect(text: str) -> list[Span]:
        found = analyzer.analyze(
            text, language="en", entities=entities, score_threshold=pii.DEFAULT_THRESHOLD
        )
        return [(r.start, r.end, r.entity_type) for r in found]

    return detect


def measure(detect: Callable[[str], list[Span]], records: Iterable[dict[str, Any]]) -> Tally:
    tally = Tally()
    for r in records:
        labels = [(s["start"], s["end"], s["entity"]) for s in r["spans"]]
        tally.add(r["kind"], labels, detect(r["text"]))
    return tally


def ms_per_200(
    detect: Callable[[str], list[Span]], records: list[dict[str, Any]], kind: str = "clean"
) -> float:
    """Milliseconds per 200 characters of the records of one kind, joined and cut into 200-char texts
    (`clean`: ordinary prompts)."""
    prose = " ".join(r["text"] for r in records if r["kind"] == kind)
    chunks = [prose[i : i + 200] for i in range(0, len(prose) - 199, 200)] or [prose]
    detect(chunks[0])
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for chunk in chunks:
            detect(chunk)
        best = min(best, (time.perf_counter() - start) / len(chunks))
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--every", type=int, default=1, help="use every Nth record")
    args = parser.parse_args()
    records = load(args.corpus, args.every)
    runtime = Runtime()
    systems = {"warden": warden_detector(runtime), "presidio": presidio_detector(runtime)}
    tallies = {name: measure(detect, records) for name, detect in systems.items()}
    speeds = {name: ms_per_200(detect, records) for name, detect in systems.items()}
    dense = {name: ms_per_200(detect, records, "pii") for name, detect in systems.items()}
    entities = sorted(next(iter(tallies.values())).labelled)
    print(f"{len(records)} records; recall / precision per entity (n = labelled values)\n")
    print(f"| entity | n | {' | '.join(f'{n} recall | {n} precision' for n in systems)} |")
    print("|---|---:|" + "---:|" * 2 * len(systems))
    for entity in [*entities, None]:
        n = sum(tallies["warden"].labelled.values()) if entity is None else tallies["warden"].labelled[entity]
        cells = " | ".join(f"{t.recall(entity):.3f} | {t.precision(entity):.3f}" for t in tallies.values())
        print(f"| {entity or 'overall'} | {n} | {cells} |")
    print()
    for name, t in tallies.items():
        print(
            f"{name}: hard negatives flagged {t.negatives_flagged}/{t.negatives} ({t.flagged():.1%}); "
            f"{speeds[name]:.3f} ms per 200 characters of ordinary text, {dense[name]:.3f} of PII-dense text"
        )


if __name__ == "__main__":
    main()
