"""The heavy things a process loads once for all policies: presidio's engine and the classifiers."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from policies.scanners import ScannerUnavailable


@dataclass(frozen=True, slots=True)
class ModelPaths:
    pii_spacy_model: str = ""  # a spaCy model folder (NER for names); empty: pattern recognizers only
    # `builtin` (alt-profanity-check's linear model), `none`, a Detoxify checkpoint, or a folder from
    # `warden models export-toxicity`
    toxicity_model: str = "builtin"
    toxicity_config: str = ""  # the checkpoint's base model folder (config.json + tokenizer)
    device: str = "cpu"  # cpu | cuda
    # an ONNX sequence classifier folder (`warden models export-classifier`) for the injection scanner
    injection_model: str = ""


class Runtime:
    def __init__(self, paths: ModelPaths | None = None, clean_memo: int = 0) -> None:
        self.paths = paths or ModelPaths()
        # How many clean texts each compiled policy remembers (see CompiledPolicy.scan); 0: none.
        self.clean_memo = clean_memo
        self._lock = threading.Lock()
        self._pii: Any = None
        self._toxicity: Any = None
        self._injection: Any = None

    def pii_engine(self) -> Any:
        with self._lock:
            if self._pii is None:
                from policies.scanners.pii import PiiEngine

                self._pii = PiiEngine(self.paths.pii_spacy_model)
            return self._pii

    def toxicity_model(self) -> Any:
        if self.paths.toxicity_model in ("", "none"):
            raise ScannerUnavailable(
                "the toxicity scanner needs a model: set policies.toxicity_model (builtin, or a model's path)"
            )
        with self._lock:
            if self._toxicity is None:
                from policies.toxicity_model import load_toxicity_model

                self._toxicity = load_toxicity_model(
                    self.paths.toxicity_model, self.paths.toxicity_config, self.paths.device
                )
            return self._toxicity

    def injection_model(self) -> Any:
        """The configured injection classifier, or None when there is none."""
        if not self.paths.injection_model:
            return None
        with self._lock:
            if self._injection is None:
                from policies.toxicity_model import OnnxClassifier

                self._injection = OnnxClassifier(self.paths.injection_model, self.paths.device)
            return self._injection
