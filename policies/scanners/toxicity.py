"""Toxicity with a Detoxify model (PyTorch, or the same model exported to ONNX).

A verdict on the whole text, not on a span: in a stream it runs once the answer is complete and
can flag it, not retract it (README, "Streaming").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from policies.document import ParamError
from policies.findings import Finding
from policies.scanners import known_keys, score, string_list

if TYPE_CHECKING:
    from policies.runtime import Runtime

LABELS = ("toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack", "sexual_explicit")
PARAMS = ("threshold", "thresholds", "labels", "when_unavailable")


def check(params: dict[str, Any], stage: str, action: str) -> None:
    known_keys(params, PARAMS)
    if "threshold" in params:
        score(params["threshold"], ("threshold",))
    thresholds = params.get("thresholds") or {}
    if not isinstance(thresholds, dict):
        raise ParamError(("thresholds",), "must be a mapping label -> score")
    for label, value in thresholds.items():
        if label not in LABELS:
            raise ParamError(("thresholds", label), f"unknown label (known: {', '.join(LABELS)})")
        score(value, ("thresholds", label))
    for i, label in enumerate(string_list(params.get("labels", ["toxicity"]), ("labels",))):
        if label not in LABELS:
            raise ParamError(("labels", i), f"unknown label (known: {', '.join(LABELS)})")
    if params.get("when_unavailable", "error") not in ("error", "skip"):
        raise ParamError(("when_unavailable",), "must be error or skip")
    if action == "mask":
        raise ParamError((), "toxicity judges a whole text and cannot mask; use block, flag or log", "action")


class ToxicityScanner:
    level = "text"
    windowed = False

    def __init__(self, model: Any, thresholds: dict[str, float]) -> None:
        self._model = model
        self._thresholds = {k: v for k, v in thresholds.items() if k in model.labels}

    def scan(self, text: str) -> list[Finding]:
        if not text.strip():
            return []
        scores = self._model.scores(text)
        return [
            Finding(f"toxicity:{label}", round(scores[label], 3))
            for label, threshold in self._thresholds.items()
            if scores.get(label, 0.0) >= threshold
        ]


def build(params: dict[str, Any], runtime: Runtime) -> ToxicityScanner | None:
    """None when no model is configured and the rule says `when_unavailable: skip`."""
    from policies.scanners import ScannerUnavailable

    try:
        model = runtime.toxicity_model()
    except ScannerUnavailable:
        if params.get("when_unavailable", "error") == "skip":
            return None
        raise
    default = float(params.get("threshold", 0.5))
    labels = params.get("labels", ["toxicity"])
    thresholds = {label: default for label in ([labels] if isinstance(labels, str) else labels)}
    thresholds.update({k: float(v) for k, v in (params.get("thresholds") or {}).items()})
    return ToxicityScanner(model, thresholds)
