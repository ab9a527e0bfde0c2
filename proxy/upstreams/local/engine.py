"""`OnnxEngine`: a local decoder LLM shared by many request threads.

Serving imports only onnxruntime, tokenizers, numpy and jinja2 (no torch, no transformers).

Concurrency: request threads never touch the session. They put a request on a queue; one scheduler thread
runs the model and feeds each request's own event queue. Requests are batched continuously: a new request
is prefilled alone (so its first token does not wait for others), then joins the running batch of decode
steps, up to `max_batch` rows. Rows of different lengths share one KV cache, left-padded, with an
attention mask that hides the padding and position ids that count real tokens only. A row that finishes
(or whose caller went away) leaves at the next reshuffle; on CPU that is right away, on CUDA, where a
reshuffle copies the cache through the host, it waits until new requests join or half the rows are done.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tokenizers import Tokenizer

from proxy.upstreams.local.sampling import SamplingParams, choose_token
from proxy.upstreams.local.session import KV, DecoderSession, load_config
from proxy.upstreams.local.template import ChatTemplate, ChatTemplateError
from proxy.upstreams.local.text import IncrementalDecoder, StopMatcher

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length"]
Event = tuple[str, FinishReason | None]


class PromptTooLong(ValueError):
    """The prompt (plus max_tokens) does not fit the model's context window."""


class EngineClosed(RuntimeError):
    pass


def _token_ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, list) else [int(value)]


class _Request:
    __slots__ = (
        "cancelled",
        "completion_tokens",
        "decoder",
        "events",
        "finished",
        "params",
        "prompt",
        "rng",
        "stopper",
        "submitted",
    )

    def __init__(self, prompt: list[int], params: SamplingParams, tokenizer: Tokenizer) -> None:
        self.prompt = prompt
        self.params = params
        self.rng = np.random.default_rng(params.seed)
        self.decoder = IncrementalDecoder(tokenizer)
        self.stopper = StopMatcher(params.stop)
        self.events: queue.SimpleQueue[Event | BaseException] = queue.SimpleQueue()
        # Written by the caller's thread, read by the scheduler: a plain flag is enough (GIL, monotonic).
        self.cancelled = False
        self.completion_tokens = 0
        self.finished = False  # the finish event was sent (scheduler thread only)
        self.submitted = time.perf_counter()


class Generation:
    """The result of `OnnxEngine.generate`: iterate for (text delta, finish reason or None) events.

    The last event carries the finish reason ("stop": eos or a stop string; "length": max_tokens or the
    context window). `close()` (or leaving a `with` block, or stopping iteration early) cancels the work.
    `completion_tokens` is final once the finish event was read.
    """

    def __init__(self, request: _Request) -> None:
        self._request = request
        self.prompt_tokens = len(request.prompt)
        self.finish_reason: FinishReason | None = None
        self.first_token_s: float | None = None  # seconds from submission to the first text (or finish)

    @property
    def completion_tokens(self) -> int:
        return self._request.completion_tokens

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        if self.finish_reason is not None or self._request.cancelled:
            raise StopIteration
        event = self._request.events.get()
        if isinstance(event, BaseException):
            self._request.cancelled = True
            raise event
        if self.first_token_s is None:
            self.first_token_s = time.perf_counter() - self._request.submitted
        self.finish_reason = event[1]
        return event

    def text(self) -> str:
        return "".join(delta for delta, _ in self)

    def close(self) -> None:
        if self.finish_reason is None:
            self._request.cancelled = True

    def __enter__(self) -> Generation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A caller that drops the generation without closing it must not keep a batch row busy.
        self.close()


@dataclass(slots=True)
class _Row:
    request: _Request
    length: int  # tokens of this row in the KV cache
    next_token: int
    done: bool = False


@dataclass(slots=True)
class _Batch:
    rows: list[_Row] = field(default_factory=list)
    kv: KV | None = None
    width: int = 0  # KV sequence length shared by all rows (the longest row; shorter ones left-padded)

    def live(self) -> int:
        return sum(not row.done for row in self.rows)


_SHUTDOWN = object()


class OnnxEngine:
    """A local ONNX decoder model; thread-safe, one scheduler thread per engine.

    `path` is a folder with model.onnx, tokenizer.json, config.json (optionally generation_config.json,
    tokenizer_config.json, chat_template.jinja), as `proxy.local_model.build` writes them.
    """

    def __init__(
        self,
        path: Path | str,
        provider: str = "auto",
        max_batch: int = 8,
        threads: int | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.path = Path(path)
        self.max_batch = max_batch
        self.config = load_config(self.path)
        self.tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        self._session = DecoderSession(self.path / "model.onnx", self.config, provider, threads)
        self.provider = self._session.provider
        self.template = ChatTemplate.from_folder(self.path)
        self.eos_ids = self._eos_ids()
        self.vocab_size = int(self.config.get("vocab_size") or self.tokenizer.get_vocab_size())
        self.context_length = int(self.config.get("max_position_embeddings") or 2048)
        self._inbox: queue.SimpleQueue[_Request | object] = queue.SimpleQueue()
        self._waiting: deque[_Request] = deque()
        # Taken off the queue, not yet in a batch: a failing step must still answer them.
        self._admitting: list[_Request] = []
        self._closed = False
        self._lock = threading.Lock()
        # Written by the scheduler only; read by `stats()` from any thread.
        self._running = 0
        self._steps = 0
        self._thread = threading.Thread(target=self._loop, name=f"onnx-engine-{self.path.name}", daemon=True)
        self._thread.start()
        log.info(
            "local model %s loaded: provider=%s max_batch=%d eos=%s context=%d",
            self.path,
            self.provider,
            max_batch,
            sorted(self.eos_ids),
            self.context_length,
        )

    def _eos_ids(self) -> frozenset[int]:
        ids = set(_token_ids(self.config.get("eos_token_id")))
        gen_path = self.path / "generation_config.json"
        if gen_path.exists():
            ids.update(_token_ids(json.loads(gen_path.read_text(encoding="utf-8")).get("eos_token_id")))
        if not ids:
            raise ValueError(f"{self.path}: no eos_token_id in config.json or generation_config.json")
        return frozenset(ids)

    # -- prompts --------------------------------------------------------------------------------------

    def chat_prompt(self, messages: Sequence[Mapping[str, Any]]) -> str:
        if self.template is None:
            raise ChatTemplateError("this model has no chat template; use /v1/completions")
        return self.template.render(messages)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        # Chat prompts carry their special tokens in the text; the tokenizer splits them out as added tokens.
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids
        return ids

    # -- generation -----------------------------------------------------------------------------------

    def generate(self, prompt: str | Sequence[int], params: SamplingParams) -> Generation:
        """Queue a generation; raises PromptTooLong / ValueError before anything runs."""
        ids = self.encode(prompt) if isinstance(prompt, str) else [int(i) for i in prompt]
        if not ids:
            raise ValueError("the prompt is empty")
        if min(ids) < 0 or max(ids) >= self.vocab_size:
            # An out-of-range id would fail the shared batch step, not just this request.
            raise ValueError(f"token ids must be between 0 and {self.vocab_size - 1}")
        room = self.context_length - len(ids)
        if room < 1:
            raise PromptTooLong(
                f"the prompt has {len(ids)} tokens; this model's context is {self.context_length}"
            )
        if params.max_tokens is None or params.max_tokens > room:
            if params.max_tokens is not None:
                raise PromptTooLong(
                    f"prompt ({len(ids)} tokens) + max_tokens ({params.max_tokens}) exceeds this model's "
                    f"context of {self.context_length} tokens"
                )
            params = dataclasses.replace(params, max_tokens=room)
        request = _Request(ids, params, self.tokenizer)
        # Under the lock, a request either reaches the scheduler before its shutdown or is refused.
        with self._lock:
            if self._closed:
                raise EngineClosed("engine is closed")
            self._inbox.put(request)
        return Generation(request)

    def generate_text(self, prompt: str | Sequence[int], params: SamplingParams) -> str:
        with self.generate(prompt, params) as generation:
            return generation.text()

    def stats(self) -> dict[str, int]:
        """Rows generating now, requests queued for a row, decode steps run so far (for metrics)."""
        return {"running": self._running, "waiting": len(self._waiting), "steps": self._steps}

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._inbox.put(_SHUTDOWN)
        self._thread.join(timeout=30)

    # -- scheduler thread -----------------------------------------------------------------------------

    def _loop(self) -> None:
        batch = _Batch()
        while True:
            if not batch.rows and not self._waiting:
                item = self._inbox.get()  # idle: sleep until work arrives
                if item is _SHUTDOWN:
                    break
                self._waiting.append(item)  # type: ignore[arg-type]
            if self._drain_inbox():
                break
            try:
                batch = self._step(batch)
            except Exception as exc:
                # A failed step poisons the shared cache: fail every request in it, start afresh.
                log.exception("local model step failed")
                for request in [row.request for row in batch.rows] + self._admitting:
                    if not request.finished:
                        request.finished = True
                        request.events.put(RuntimeError(f"local model failed: {exc}"))
                self._admitting.clear()
                batch = _Batch()
        self._fail_all(batch, EngineClosed("engine closed"))

    def _drain_inbox(self) -> bool:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return False
            if item is _SHUTDOWN:
                return True
            self._waiting.append(item)  # type: ignore[arg-type]

    def _fail_all(self, batch: _Batch, error: BaseException) -> None:
        pending = [row.request for row in batch.rows if not row.done] + list(self._waiting)
        self._waiting.clear()
        self._drain_inbox()
        pending += list(self._waiting)
        for request in pending:
            request.events.put(error)

    def _step(self, batch: _Batch) -> _Batch:
        for row in batch.rows:
            if row.request.cancelled:
                row.done = True
        live = batch.live()
        dead = len(batch.rows) - live
        admit = self._waiting and live < self.max_batch
        # Finished rows still run (wasted work) until pruned; one must leave before its positions pass
        # the context window, where some models' position tables end.
        prune = dead and (
            self._session.cheap_reshape
            or dead * 2 >= len(batch.rows)
            or live == 0
            or batch.width + 1 >= self.context_length
        )
        if admit or prune:
            batch = self._reshape(batch)
        if batch.rows:
            self._decode(batch)
        self._running = batch.live()
        return batch

    def _reshape(self, batch: _Batch) -> _Batch:
        """New batch = live rows + newly prefilled requests, the cache re-padded to the longest row."""
        keep = [(i, row) for i, row in enumerate(batch.rows) if not row.done]
        joining: list[tuple[_Row, list[np.ndarray]]] = []
        while self._waiting and len(keep) + len(joining) < self.max_batch:
            request = self._waiting.popleft()
            if request.cancelled:
                continue
            self._admitting.append(request)
            prefilled = self._prefill(request)
            if prefilled is not None:
                joining.append(prefilled)
        rows = [row for _, row in keep] + [row for row, _ in joining]
        if not rows:
            self._admitting.clear()
            return _Batch()
        width = max(row.length for row in rows)
        old = self._session.to_host(batch.kv) if keep and batch.kv is not None else []
        merged = []
        for layer in range(len(self._session.graph.past_names)):
            sample = old[layer] if old else joining[0][1][layer]
            heads, _, dim = sample.shape[1:]
            out = np.zeros((len(rows), heads, width, dim), dtype=sample.dtype)
            for dst, (src, row) in enumerate(keep):
                out[dst, :, width - row.length :] = old[layer][src, :, batch.width - row.length :]
            for dst, (row, cache) in enumerate(joining, start=len(keep)):
                out[dst, :, width - row.length :] = cache[layer][0]
            merged.append(out)
        kv = self._session.to_device(merged)
        self._admitting.clear()
        return _Batch(rows=rows, kv=kv, width=width)

    def _prefill(self, request: _Request) -> tuple[_Row, list[np.ndarray]] | None:
        ids = np.asarray([request.prompt], dtype=np.int64)
        logits, cache = self._session.run(ids, np.ones_like(ids), None)
        row = _Row(request=request, length=ids.shape[1], next_token=0)
        if self._accept(row, logits[0]):
            return None
        return row, self._session.to_host(cache)

    def _decode(self, batch: _Batch) -> None:
        rows = batch.rows
        ids = np.asarray([[row.next_token] for row in rows], dtype=np.int64)
        mask = np.zeros((len(rows), batch.width + 1), dtype=np.int64)
        for i, row in enumerate(rows):
            mask[i, batch.width - row.length :] = 1
        logits, batch.kv = self._session.run(ids, mask, batch.kv)
        self._steps += 1
        batch.width += 1
        for i, row in enumerate(rows):
            row.length += 1
            if not row.done:
                row.done = self._accept(row, logits[i])

    def _accept(self, row: _Row, logits: np.ndarray) -> bool:
        """Sample the row's next token and tell its caller; True when the row is finished."""
        request = row.request
        if request.cancelled:
            return True
        token = choose_token(logits, request.params, request.rng)
        row.next_token = token
        request.completion_tokens += 1
        finish: FinishReason | None = None
        if token in self.eos_ids and not request.params.ignore_eos:
            text, finish = request.decoder.flush(), "stop"
        else:
            text = request.decoder.push(token)
            # generate() capped max_tokens to the context window, so this also ends rows that fill it.
            if request.completion_tokens >= (request.params.max_tokens or 0):
                text += request.decoder.flush()
                finish = "length"
        released, stopped = request.stopper.feed(text)
        if stopped:
            finish = "stop"
        elif finish is not None:
            released += request.stopper.flush()
        if released or finish is not None:
            request.events.put((released, finish))
        if finish is not None:
            request.finished = True
        return finish is not None
