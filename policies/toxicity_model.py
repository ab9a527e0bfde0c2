"""Toxicity models: the built-in linear tier, a Detoxify checkpoint on PyTorch, or its ONNX export.

Offline by construction: Detoxify downloads its checkpoint unless given one, and even with one it
asks the hub for the base model's config unless the checkpoint's `model_type` is a local folder.
Warden always passes a local folder (`policies.toxicity_config`, or the checkpoint's own
model_type when that is a folder) and refuses to start otherwise.

Long texts are scored in windows of `max_tokens` with an overlap; a label's score is its highest
score over the windows, so a toxic sentence deep in a long answer is not diluted.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DETOXIFY_RENAMES = {
    "toxic": "toxicity",
    "identity_hate": "identity_attack",
    "severe_toxic": "severe_toxicity",
}
ONNX_META = "warden-toxicity.json"
# The same folder layout for any text classifier (an injection model, say): `warden models
# export-classifier` writes this name; a toxicity export keeps the name it always had.
CLASSIFIER_META = "warden-classifier.json"
META_NAMES = (CLASSIFIER_META, ONNX_META)
ACTIVATIONS = ("sigmoid", "softmax")
BUILTIN = "builtin"
NAMED_MODELS = (BUILTIN, "none")  # values of policies.toxicity_model that are not paths
WINDOW_TOKENS = 512
WINDOW_OVERLAP = 64


def offline_hub() -> None:
    """transformers and huggingface_hub must never try the network from inside Warden."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def load_toxicity_model(path: str, config: str = "", device: str = "cpu") -> Any:
    """`builtin` is the linear model of alt-profanity-check; a folder with `warden-toxicity.json` is an
    ONNX export; anything else a Detoxify checkpoint."""
    if path == BUILTIN:
        return _builtin()
    if classifier_meta(path) is not None:
        return OnnxClassifier(path, device)
    return TorchToxicity(path, config, device)


@functools.lru_cache(maxsize=1)
def _builtin() -> Any:
    """One built-in model per process, shared by every Runtime: it is read-only once loaded, and
    loading it takes 0.3 s (an app per test, or per reload, would pay it each time)."""
    from policies.linear_toxicity import LinearToxicity

    return LinearToxicity()


def _sigmoid(x: Any) -> Any:
    import numpy as np

    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x: Any) -> Any:
    import numpy as np

    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def classifier_meta(folder: str | Path) -> Path | None:
    """The metadata file that makes `folder` an ONNX classifier Warden can load, if there is one."""
    return next((Path(folder) / n for n in META_NAMES if (Path(folder) / n).is_file()), None)


class TorchToxicity:
    def __init__(self, checkpoint: str, config: str = "", device: str = "cpu") -> None:
        offline_hub()
        import torch
        from detoxify.detoxify import get_model_and_tokenizer

        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"toxicity checkpoint not found: {checkpoint}")
        # A Detoxify checkpoint is a pickle: load only files you trust (like any model weights).
        loaded = torch.load(checkpoint, map_location=device, weights_only=False)
        if not isinstance(loaded, dict) or "config" not in loaded or "state_dict" not in loaded:
            raise ValueError(f"{checkpoint}: not a Detoxify checkpoint (needs 'config' and 'state_dict')")
        args = dict(loaded["config"]["arch"]["args"])
        local = config or args.get("model_type", "")
        if not Path(local).is_dir():
            raise ValueError(
                f"{checkpoint}: its base model {args.get('model_type')!r} is not a local folder; set "
                "policies.toxicity_config to a folder holding that model's config.json and tokenizer files"
            )
        args["model_type"] = local
        classes = loaded["config"]["dataset"]["args"]["classes"]
        self.labels = [DETOXIFY_RENAMES.get(c, c) for c in classes]
        self.model, self.tokenizer = get_model_and_tokenizer(
            **args, state_dict=loaded["state_dict"], huggingface_config_path=local
        )
        self.model.to(device).eval()
        self.device = device
        self._torch = torch
        log.info("toxicity model loaded on PyTorch (%s): %s", device, checkpoint)

    def scores(self, text: str) -> dict[str, float]:
        torch = self._torch
        inputs = self.tokenizer(
            text,
            truncation=True,
            max_length=WINDOW_TOKENS,
            stride=WINDOW_OVERLAP,
            return_overflowing_tokens=True,
            padding=True,
            return_tensors="pt",
        )
        inputs.pop("overflow_to_sample_mapping", None)
        with torch.inference_mode():
            logits = self.model(**{k: v.to(self.device) for k, v in inputs.items()})[0]
        best = torch.sigmoid(logits).max(dim=0).values.cpu().tolist()
        return dict(zip(self.labels, best, strict=True))


class OnnxClassifier:
    """An exported text classifier on onnxruntime (CUDA when asked and available), tokenized by
    `tokenizers`: a Detoxify export for toxicity, any sequence classifier (an injection model) too.

    The folder holds `model.onnx` (inputs input_ids, attention_mask[, token_type_ids]; output
    logits), `tokenizer.json`, and a metadata file naming the labels in logit order and how logits
    become scores: `sigmoid` (independent labels, Detoxify) or `softmax` (one class of several).
    """

    def __init__(self, folder: str, device: str = "cpu") -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        meta_file = classifier_meta(folder)
        if meta_file is None:
            raise ValueError(f"{folder}: no {' or '.join(META_NAMES)}; export the model with `warden models`")
        meta = json.loads(meta_file.read_text())
        self.labels = list(meta["labels"])
        self.activation = meta.get("activation", "sigmoid")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"{meta_file}: activation must be one of {', '.join(ACTIVATIONS)}")
        model = Path(folder) / meta.get("model", "model.onnx")
        wanted = ["CPUExecutionProvider"]
        if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            wanted.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(model), options, providers=wanted)
        self.provider = self.session.get_providers()[0]
        self._inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
        self.tokenizer.enable_truncation(WINDOW_TOKENS, stride=WINDOW_OVERLAP)
        self.tokenizer.no_padding()
        self._lock = threading.Lock()
        log.info("classifier loaded on onnxruntime (%s): %s", self.provider, model)

    def scores(self, text: str) -> dict[str, float]:
        import numpy as np

        first = self.tokenizer.encode(text)
        windows = [first, *first.overflowing]
        width = max(len(w.ids) for w in windows)
        ids = np.zeros((len(windows), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, window in enumerate(windows):
            ids[row, : len(window.ids)] = window.ids
            mask[row, : len(window.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        (logits,) = self.session.run(["logits"], feed)
        activate = _softmax if self.activation == "softmax" else _sigmoid
        best = activate(logits.astype(np.float64)).max(axis=0).tolist()
        return dict(zip(self.labels, best, strict=True))


OnnxToxicity = OnnxClassifier  # the name it had when toxicity was its only use


def export_onnx(checkpoint: str, config: str, out: str, *, int8: bool = False) -> Path:
    """Export a Detoxify checkpoint to `out` (model.onnx, tokenizer.json, warden-toxicity.json).

    Needs the `models` extra (onnx). int8 applies onnxruntime's dynamic quantization: much faster
    on CPU, scores shift slightly (measure on your data before lowering thresholds).
    """
    source = TorchToxicity(checkpoint, config, "cpu")
    meta = {"labels": source.labels, "int8": int8, "source": Path(checkpoint).name}
    return _export_logits(source.model, source.tokenizer, Path(out), ONNX_META, meta, int8=int8)


def export_classifier(model_dir: str, out: str, *, int8: bool = False) -> Path:
    """Export a local Hugging Face sequence classifier (config.json with its labels, weights,
    tokenizer files; an injection model, say) to `out`, for `policies.injection_model`.

    Needs the `models` extra. Labels come from the config's id2label; independent labels
    (problem_type multi_label_classification) get sigmoid scores, anything else softmax.
    """
    offline_hub()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not (Path(model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no config.json (a Hugging Face model folder is needed)")
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{model_dir}: needs a fast tokenizer (tokenizer.json) for onnxruntime serving")
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    multi = model.config.problem_type == "multi_label_classification"
    meta = {
        "labels": labels,
        "activation": "sigmoid" if multi else "softmax",
        "int8": int8,
        "source": Path(model_dir).name,
    }
    return _export_logits(model, tokenizer, Path(out), CLASSIFIER_META, meta, int8=int8)


def _export_logits(
    model: Any, tokenizer: Any, folder: Path, meta_name: str, meta: dict[str, Any], *, int8: bool
) -> Path:
    import torch

    folder.mkdir(parents=True, exist_ok=True)

    class Logits(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    sample = tokenizer("an example sentence", return_tensors="pt")
    fp32 = folder / ("model-fp32.onnx" if int8 else "model.onnx")
    # The TorchScript exporter: the newer one needs onnxscript and gains nothing for an encoder.
    # It warns that it is legacy, and the tracer about constants; both are expected here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # torch.jit re-exports it without listing it in __all__.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
        torch.onnx.export(
            Logits(model),
            (sample["input_ids"], sample["attention_mask"]),
            str(fp32),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
            },
            opset_version=17,
            dynamo=False,
        )
    name = "model.onnx"
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32), str(folder / name), weight_type=QuantType.QInt8)
        fp32.unlink()
    tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
    (folder / meta_name).write_text(json.dumps({**meta, "model": name}, indent=2) + "\n")
    return folder
