"""One onnxruntime session for an optimum `text-generation-with-past` decoder, on CPU or CUDA.

The graph's inputs are read from the session, not assumed: `input_ids`, `attention_mask`, optional
`position_ids` and `use_cache_branch`, and `past_key_values.N.key/value` paired with `present.N.*`.
The KV cache is opaque to callers: numpy arrays on CPU, OrtValues that stay on the GPU under CUDA
(IOBinding). Rearranging rows of a batch goes through the host (`to_host`/`to_device`).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
_PAST = re.compile(r"^past_key_values\.(\d+)\.(key|value)$")
_ORT_TO_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}

KV = list[Any]  # per past input, in `Graph.past_names` order: np.ndarray (CPU) or ort.OrtValue (CUDA)


@dataclass(frozen=True, slots=True)
class Graph:
    past_names: tuple[str, ...]
    present_names: tuple[str, ...]
    kv_heads: int
    head_dim: int
    kv_dtype: type
    has_position_ids: bool
    has_cache_branch: bool


def _inspect(session: ort.InferenceSession, config: dict[str, Any]) -> Graph:
    inputs = {item.name: item for item in session.get_inputs()}
    outputs = {item.name for item in session.get_outputs()}
    for required in ("input_ids", "attention_mask"):
        if required not in inputs:
            raise ValueError(f"model has no {required!r} input; export it with text-generation-with-past")
    if "logits" not in outputs:
        raise ValueError("model has no 'logits' output")
    past = sorted(
        (int(m.group(1)), m.group(2) == "value", name) for name in inputs if (m := _PAST.match(name))
    )
    if not past:
        raise ValueError("model has no past_key_values inputs; export it with text-generation-with-past")
    past_names = tuple(name for _, _, name in past)
    present_names = tuple(name.replace("past_key_values", "present") for name in past_names)
    missing = [name for name in present_names if name not in outputs]
    if missing:
        raise ValueError(f"model lacks outputs {missing}")
    first = inputs[past_names[0]]
    heads, head_dim = first.shape[1], first.shape[3]
    # Dims are symbolic in some exports; the model config knows them.
    if not isinstance(heads, int):
        heads = int(config.get("num_key_value_heads") or config["num_attention_heads"])
    if not isinstance(head_dim, int):
        head_dim = int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])
    dtype = _ORT_TO_NUMPY.get(first.type)
    if dtype is None:
        raise ValueError(f"unsupported KV cache type {first.type}")
    return Graph(
        past_names=past_names,
        present_names=present_names,
        kv_heads=heads,
        head_dim=head_dim,
        kv_dtype=dtype,
        has_position_ids="position_ids" in inputs,
        has_cache_branch="use_cache_branch" in inputs,
    )


def _session_options(threads: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # onnxruntime's warnings about node placement are noise here
    if threads:
        options.intra_op_num_threads = threads
    return options


def _preload_cuda_libraries() -> None:
    # onnxruntime-gpu finds CUDA/cuDNN from the nvidia-* wheels only after this; harmless if absent.
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except OSError as exc:
        log.debug("onnxruntime.preload_dlls: %s", exc)


class DecoderSession:
    """Runs the decoder graph; `provider` is "cuda" or "cpu", whichever really runs (never a wish)."""

    def __init__(self, model_file: Path, config: dict[str, Any], provider: str, threads: int | None) -> None:
        if provider not in ("auto", "cuda", "cpu"):
            raise ValueError(f"provider must be auto, cuda or cpu, not {provider!r}")
        self.session, self.provider = self._open(model_file, provider, threads)
        self.graph = _inspect(self.session, config)
        # Where the cache lives between decode steps (IOBinding); None: plain numpy runs. Tests set "cpu"
        # to exercise the bound path without a GPU.
        self.io_device: str | None = "cuda" if self.provider == "cuda" else None
        # On CPU a batch reshuffle is a memcpy; on CUDA it is a round trip over PCIe, worth batching up.
        self.cheap_reshape = self.provider == "cpu"

    @staticmethod
    def _open(model_file: Path, provider: str, threads: int | None) -> tuple[ort.InferenceSession, str]:
        path = str(model_file)
        if provider in ("auto", "cuda"):
            # onnxruntime-gpu lists CUDA even where no GPU or CUDA library exists, and then quietly falls
            # back to CPU: only the providers of a created session tell the truth.
            reason = "CUDAExecutionProvider is not in onnxruntime.get_available_providers()"
            if CUDA in ort.get_available_providers():
                _preload_cuda_libraries()
                try:
                    # TF32 off: CUDA greedy output should match CPU greedy output token for token.
                    cuda_options = {"device_id": 0, "use_tf32": "0"}
                    session = ort.InferenceSession(
                        path, _session_options(threads), providers=[(CUDA, cuda_options), CPU]
                    )
                except Exception as exc:  # onnxruntime raises bare RuntimeError/Fail subclasses
                    reason = f"CUDA session failed: {exc}"
                else:
                    if CUDA in session.get_providers():
                        log.info("local model %s runs on CUDA", model_file.parent.name)
                        return session, "cuda"
                    reason = f"onnxruntime fell back to {session.get_providers()}"
            if provider == "cuda":
                raise RuntimeError(f"provider 'cuda' requested but unavailable: {reason}")
            log.info("local model %s: no CUDA (%s)", model_file.parent.name, reason)
        session = ort.InferenceSession(path, _session_options(threads), providers=[CPU])
        log.info("local model %s runs on CPU", model_file.parent.name)
        return session, "cpu"

    def empty_kv(self, batch: int) -> list[np.ndarray]:
        g = self.graph
        shape = (batch, g.kv_heads, 0, g.head_dim)
        return [np.zeros(shape, dtype=g.kv_dtype) for _ in g.past_names]

    def run(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, past: KV | None
    ) -> tuple[np.ndarray, KV]:
        """One forward pass; returns the last position's logits (float32, [batch, vocab]) and the new cache.

        Rows may be left-padded: `attention_mask` has zeros there, and positions count real tokens only.
        """
        feeds: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.graph.has_position_ids:
            seq = input_ids.shape[1]
            feeds["position_ids"] = (attention_mask.sum(axis=1, keepdims=True) - seq + np.arange(seq)).astype(
                np.int64
            )
        if self.graph.has_cache_branch:
            feeds["use_cache_branch"] = np.array([past is not None], dtype=np.bool_)
        if self.io_device is not None and past is not None:
            return self._run_bound(feeds, past, self.io_device)
        # A prefill (no past) runs plainly even on CUDA: its cache goes to the host anyway, to be merged
        # into the running batch, and an empty past needs no device buffers.
        kv = past if past is not None else self.empty_kv(input_ids.shape[0])
        feeds.update(zip(self.graph.past_names, kv, strict=True))
        outputs = self.session.run(["logits", *self.graph.present_names], feeds)
        return np.asarray(outputs[0][:, -1, :], dtype=np.float32), list(outputs[1:])

    def _run_bound(self, feeds: dict[str, Any], kv: KV, device: str) -> tuple[np.ndarray, KV]:
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        for name, value in zip(self.graph.past_names, kv, strict=True):
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, value)
            else:
                binding.bind_ortvalue_input(name, value)
        # Logits come to the host for sampling; the cache stays on the device for the next step.
        binding.bind_output("logits", "cpu")
        for name in self.graph.present_names:
            binding.bind_output(name, device, 0)
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        logits = outputs[0].numpy()
        return np.asarray(logits[:, -1, :], dtype=np.float32), list(outputs[1:])

    def to_host(self, kv: KV) -> list[np.ndarray]:
        return [value if isinstance(value, np.ndarray) else value.numpy() for value in kv]

    def to_device(self, arrays: list[np.ndarray]) -> KV:
        if self.io_device is None:
            return arrays
        return [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a), self.io_device, 0) for a in arrays]


def load_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
