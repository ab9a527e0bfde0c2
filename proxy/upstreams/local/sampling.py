"""Sampling parameters and the choice of the next token from one row of logits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Below this a temperature is treated as 0 (greedy): dividing by it would overflow float32 logits.
GREEDY_BELOW = 1e-5


@dataclass(frozen=True, slots=True, kw_only=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    # None: until the context window is full.
    max_tokens: int | None = 256
    stop: tuple[str, ...] = ()
    # None: fresh entropy per request. The same seed and prompt give the same text on the same engine
    # (batching changes the arithmetic only in the last bits, so sampled text can differ across loads).
    seed: int | None = None
    # Generate exactly max_tokens (benchmarks and tests need fixed lengths; vLLM has the same switch).
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError("temperature must be between 0 and 2")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be greater than 0 and at most 1")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW


def choose_token(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
    """Greedy (first maximum, as torch.argmax) or temperature + nucleus sampling from one logits row."""
    if params.greedy:
        return int(np.argmax(logits))
    # float64: exp() of float32 logits / small temperatures loses the tail entirely.
    scaled = logits.astype(np.float64) / params.temperature
    scaled -= scaled.max()
    probs = np.exp(scaled)
    if params.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        sorted_probs = probs[order]
        cumulative = np.cumsum(sorted_probs)
        # Smallest set whose mass reaches top_p; the most likely token always stays in.
        keep = int(np.searchsorted(cumulative, params.top_p * cumulative[-1])) + 1
        candidates, weights = order[:keep], sorted_probs[:keep]
    else:
        candidates, weights = None, probs
    cumulative = np.cumsum(weights)
    index = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    index = min(index, len(weights) - 1)
    return int(candidates[index]) if candidates is not None else index
