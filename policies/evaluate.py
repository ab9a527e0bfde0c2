"""Run a policy on one text without a model: for policy tests, `warden policy test` and the
`/v1/warden/evaluate` endpoint."""

from __future__ import annotations

from typing import Any

from policies.engine import Blocked, CompiledPolicy, Report
from policies.findings import Placeholders


def evaluate_text(compiled: CompiledPolicy, stage: str, text: str) -> dict[str, Any]:
    """The decision, the text as the next hop would see it (masked), and the findings (no values).

    On the output stage the text is what the client would receive: masks applied, placeholders
    left as they are (there is no prompt whose values could be restored).
    """
    report = Report(compiled.label)
    placeholders = Placeholders()
    blocked_by = None
    try:
        out = compiled.check_text(stage, text, placeholders, report)
    except Blocked as exc:
        out, blocked_by = "", exc.hit.rule
    return {
        "policy": compiled.label,
        "stage": stage,
        "decision": report.decision,
        "blocked_by": blocked_by,
        "text": out,
        "findings": [
            {"stage": s, "kind": k, "action": a, "count": n, "score": round(score, 3)}
            for s, k, a, n, score in report.summary()
        ],
    }
