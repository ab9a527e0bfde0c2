"""OnnxEngine against transformers, and its streaming, stop, UTF-8, batching and cancellation rules."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from proxy.upstreams.local.build import HF_SUBDIR
from proxy.upstreams.local.engine import EngineClosed, OnnxEngine, PromptTooLong
from proxy.upstreams.local.sampling import SamplingParams
from proxy.upstreams.local.text import REPLACEMENT
from tests.support import chat

GREEDY = SamplingParams(temperature=0.0, max_tokens=40)
QUESTIONS = [
    "What is a list comprehension?",
    "Explain the with statement.",
    "hi",
    "How do generators work in Python? Give an example, please.",
    "Grüße! 日本語?",
    "lambda",
    "What does the global keyword do?",
    "Tell me about exceptions and how to raise them.",
]


def _stream(engine: OnnxEngine, prompt: str, params: SamplingParams) -> tuple[list[str], str | None, int]:
    with engine.generate(prompt, params) as generation:
        events = list(generation)
    assert all(reason is None for _, reason in events[:-1])
    return [delta for delta, _ in events], events[-1][1], generation.completion_tokens


def test_greedy_output_equals_transformers_generate(engine: OnnxEngine, tiny_model: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model / HF_SUBDIR).eval()
    for question in QUESTIONS[:4]:
        prompt = chat(engine, question)
        ids = engine.encode(prompt)
        with torch.no_grad():
            out = model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                do_sample=False,
                max_new_tokens=GREEDY.max_tokens,
            )
        expected_ids = out[0, len(ids) :].tolist()
        deltas, reason, completion = _stream(engine, prompt, GREEDY)
        assert "".join(deltas) == engine.tokenizer.decode(expected_ids, skip_special_tokens=True)
        assert completion == len(expected_ids)
        assert reason == ("stop" if expected_ids[-1] in engine.eos_ids else "length")


def test_stop_string_across_tokens_is_honoured_in_full_and_streamed_text(engine: OnnxEngine) -> None:
    prompt = chat(engine, QUESTIONS[0])
    full = engine.generate_text(prompt, GREEDY)
    pieces = [engine.tokenizer.decode([i]) for i in engine.encode(full)]
    # A stop string made of the end of one token and the start of the next, at its first occurrence.
    for k in range(3, len(pieces) - 1):
        left, right = pieces[k], pieces[k + 1]
        if len(left) >= 2 and len(right) >= 2 and (left + right).isprintable():
            stop = left[-2:] + right[:2]
            at = full.find(stop)
            if at > 0:
                break
    else:
        pytest.fail("no token boundary to put a stop string on")
    params = SamplingParams(temperature=0.0, max_tokens=40, stop=("never-there", stop))
    deltas, reason, completion = _stream(engine, prompt, params)
    assert "".join(deltas) == full[:at]
    assert reason == "stop"
    assert completion < len(engine.encode(full))
    # A stop string that keeps matching a prefix but never completes delays text, never loses it.
    teaser = (full[at : at + 3] + "\x00",)
    deltas, reason, _ = _stream(engine, prompt, SamplingParams(temperature=0.0, max_tokens=40, stop=teaser))
    assert "".join(deltas) == full and reason == "length"


def test_streamed_multibyte_text_is_never_broken(tiny_model: Path) -> None:
    engine = OnnxEngine(tiny_model, provider="cpu", max_batch=2)
    text = "Grüße 🙂 日本語 ∑ naïve"
    script = [*engine.encode(text), next(iter(engine.eos_ids))]
    real_run = engine._session.run
    step = 0

    def scripted(input_ids, attention_mask, past):
        # The real model runs (real cache, real shapes); its choice is overruled by the script.
        nonlocal step
        logits, cache = real_run(input_ids, attention_mask, past)
        logits = np.full_like(logits, -1e9)
        logits[:, script[step]] = 0.0
        step += 1
        return logits, cache

    engine._session.run = scripted  # type: ignore[method-assign]
    try:
        deltas, reason, completion = _stream(engine, chat(engine, "say it"), GREEDY)
    finally:
        engine.close()
    assert "".join(deltas) == text and reason == "stop" and completion == len(script)
    assert not any(REPLACEMENT in d for d in deltas)
    assert len(deltas) < len(script) - 1  # some tokens were held back until their character was whole


@pytest.mark.parametrize("bound", [False, True], ids=["numpy", "iobinding"])
def test_concurrent_requests_match_their_solo_output(tiny_model: Path, bound: bool) -> None:
    # max_batch 3 < 8 callers: requests queue, join running batches and leave at different lengths.
    engine = OnnxEngine(tiny_model, provider="cpu", max_batch=3)
    if bound:
        # The CUDA code path on CPU memory: cache in OrtValues through IOBinding, finished rows kept in
        # the batch until half are done or a request joins.
        engine._session.io_device = "cpu"
        engine._session.cheap_reshape = False
    try:
        params = [SamplingParams(temperature=0.0, max_tokens=10 + 7 * i) for i in range(len(QUESTIONS))]
        prompts = [chat(engine, q) for q in QUESTIONS]
        solo = [engine.generate_text(p, sp) for p, sp in zip(prompts, params, strict=True)]
        results: list[str | None] = [None] * len(prompts)
        barrier = threading.Barrier(len(prompts))

        def work(i: int) -> None:
            barrier.wait()
            results[i] = "".join(d for d, _ in engine.generate(prompts[i], params[i]))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(prompts))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert results == solo
        assert len(set(solo)) == len(solo)
    finally:
        engine.close()


def test_closing_a_generation_frees_its_row(engine: OnnxEngine) -> None:
    prompt = chat(engine, QUESTIONS[1])
    steps = engine.stats()["steps"]
    generation = engine.generate(prompt, SamplingParams(temperature=0.0, max_tokens=900, ignore_eos=True))
    next(generation)
    generation.close()
    deadline = time.monotonic() + 5
    while engine.stats()["running"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.stats()["running"] == 0
    assert generation.completion_tokens < 100 and engine.stats()["steps"] - steps < 100
    assert list(generation) == []
    # The engine keeps serving.
    assert engine.generate_text(prompt, SamplingParams(temperature=0.0, max_tokens=5))


def test_seeds_make_sampling_reproducible_and_tiny_top_p_is_greedy(engine: OnnxEngine) -> None:
    prompt = chat(engine, QUESTIONS[2])

    def sample(seed: int | None, top_p: float = 1.0) -> str:
        return engine.generate_text(
            prompt, SamplingParams(temperature=1.0, top_p=top_p, max_tokens=20, seed=seed)
        )

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)
    assert sample(None, top_p=1e-9) == engine.generate_text(
        prompt, SamplingParams(temperature=0, max_tokens=20)
    )


def test_prompt_and_max_tokens_must_fit_the_context(engine: OnnxEngine) -> None:
    with pytest.raises(PromptTooLong):
        engine.generate("x " * 1100, GREEDY)
    with pytest.raises(PromptTooLong):
        engine.generate(chat(engine, "hi"), SamplingParams(max_tokens=1020))
    with pytest.raises(ValueError, match="token ids"):
        engine.generate([1, 2, 10**6], GREEDY)
    with engine.generate(chat(engine, "hi"), SamplingParams(max_tokens=None, temperature=0)) as generation:
        next(generation)


def test_auto_provider_falls_back_to_cpu_and_cuda_fails_loudly(tiny_model: Path) -> None:
    # Here onnxruntime-gpu lists CUDA without any GPU: only the session's providers tell the truth.
    engine = OnnxEngine(tiny_model, provider="auto", max_batch=1)
    try:
        assert engine.provider == (
            "cuda" if "CUDAExecutionProvider" in engine._session.session.get_providers() else "cpu"
        )
        assert engine.generate_text(chat(engine, "hi"), GREEDY) == engine.generate_text(
            chat(engine, "hi"), GREEDY
        )
    finally:
        engine.close()
    if engine.provider == "cpu":
        with pytest.raises(RuntimeError, match="cuda"):
            OnnxEngine(tiny_model, provider="cuda")


def test_a_failed_step_fails_its_requests_and_the_engine_recovers(tiny_model: Path) -> None:
    engine = OnnxEngine(tiny_model, provider="cpu", max_batch=2)
    real_run = engine._session.run
    failures = iter([True])

    def flaky(input_ids, attention_mask, past):
        if next(failures, False):
            raise RuntimeError("device lost")
        return real_run(input_ids, attention_mask, past)

    engine._session.run = flaky  # type: ignore[method-assign]
    prompt = chat(engine, "hi")
    try:
        with pytest.raises(RuntimeError, match="device lost"):
            engine.generate_text(prompt, GREEDY)
        assert engine.generate_text(prompt, GREEDY)
    finally:
        engine.close()


def test_close_answers_pending_and_later_requests(tiny_model: Path) -> None:
    engine = OnnxEngine(tiny_model, provider="cpu", max_batch=1)
    prompt = chat(engine, "hi")
    long = SamplingParams(temperature=0.0, max_tokens=900, ignore_eos=True)
    running, queued = engine.generate(prompt, long), engine.generate(prompt, long)
    next(running)
    engine.close()
    for generation in (running, queued):
        with pytest.raises(EngineClosed):
            list(generation)
    with pytest.raises(EngineClosed):
        engine.generate(prompt, GREEDY)
