"""`OnnxUpstream`: a local ONNX model behind Warden's Upstream seam, speaking OpenAI's wire format.

It takes the same request bytes an HTTP upstream would get and answers with the bytes OpenAI would send:
a JSON body, or server-sent events ending in `data: [DONE]`. Bad parameters are answered with an
OpenAI-style 400 body, never raised; only a broken engine raises `UpstreamFailure`.

Usage counting (as vLLM does): `prompt_tokens` are the tokens of the rendered chat template (or of the
completions prompt), counted once however many choices `n` asks for; `completion_tokens` are all tokens
sampled for all choices, including the eos token or the token that completed a stop string (neither
appears in the text).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, ClassVar

from proxy.errors import error_body
from proxy.jsonbody import parse_json
from proxy.upstreams.http import UpstreamFailure, UpstreamReply, UpstreamStream
from proxy.upstreams.local.engine import EngineClosed, Generation, OnnxEngine, PromptTooLong
from proxy.upstreams.local.sampling import SamplingParams
from proxy.upstreams.local.template import ChatTemplateError

log = logging.getLogger(__name__)

CHAT, COMPLETIONS = "chat/completions", "completions"
MAX_N = 16
MAX_STOPS = 4
DEFAULT_MAX_TOKENS = 512
JSON_HEADERS = {"content-type": "application/json"}
SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


class BadRequest(Exception):
    def __init__(
        self, message: str, param: str | None = None, code: str | None = None, status: int = 400
    ) -> None:
        super().__init__(message)
        self.message, self.param, self.code, self.status = message, param, code, status


@dataclass(frozen=True, slots=True)
class _Call:
    route: str
    prompt: str | list[int]
    params: SamplingParams
    n: int
    stream: bool
    include_usage: bool


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _error(exc: BadRequest) -> UpstreamReply:
    body = error_body(exc.message, "invalid_request_error", exc.code, exc.param)
    return UpstreamReply(exc.status, dict(JSON_HEADERS), body)


class OnnxUpstream:
    """Serves `chat/completions` and `completions` from an `OnnxEngine` (which it does not own).

    `defaults` fill parameters a request leaves out: temperature, top_p, max_tokens, stop, seed.
    `apis` narrows what it declares it speaks (the `apis` setting); never more than `default_apis`.
    """

    default_apis: ClassVar[frozenset[str]] = frozenset({"chat.completions", "completions"})

    def __init__(
        self,
        name: str,
        engine: OnnxEngine,
        model_name: str,
        defaults: Mapping[str, Any] | None = None,
        apis: frozenset[str] | None = None,
    ) -> None:
        self.name = name
        self.apis: frozenset[str] = apis or self.default_apis
        if not self.apis <= self.default_apis:
            raise ValueError(f"a local model cannot serve {sorted(self.apis - self.default_apis)}")
        self.engine = engine
        self.model_name = model_name
        self.defaults = dict(defaults or {})
        unknown = set(self.defaults) - {"temperature", "top_p", "max_tokens", "stop", "seed"}
        if unknown:
            raise ValueError(f"unknown default sampling parameters: {sorted(unknown)}")

    # -- the Upstream protocol ------------------------------------------------------------------------

    def complete(
        self, route: str, body: bytes, request_id: str, headers: Mapping[str, str] | None = None
    ) -> UpstreamReply:
        started = perf_counter()
        try:
            call = self._parse(route, body)
            generations = self._start(call)
        except BadRequest as exc:
            return _error(exc)
        texts, reasons = [], []
        with self._running(generations):
            for generation in generations:
                texts.append(generation.text())
                reasons.append(generation.finish_reason)
        created, usage = int(time.time()), self._usage(generations)
        if call.route == CHAT:
            payload: dict[str, Any] = {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": created,
                "model": self.model_name,
                "choices": [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": None,
                        "finish_reason": reason,
                    }
                    for i, (text, reason) in enumerate(zip(texts, reasons, strict=True))
                ],
                "usage": usage,
            }
        else:
            payload = {
                "id": f"cmpl-{uuid.uuid4().hex}",
                "object": "text_completion",
                "created": created,
                "model": self.model_name,
                "choices": [
                    {"index": i, "text": text, "logprobs": None, "finish_reason": reason}
                    for i, (text, reason) in enumerate(zip(texts, reasons, strict=True))
                ],
                "usage": usage,
            }
        # All of it is the model's time: there is no network, and Warden's work happens outside this call.
        return UpstreamReply(200, dict(JSON_HEADERS), _dumps(payload), perf_counter() - started)

    def stream(
        self, route: str, body: bytes, request_id: str, headers: Mapping[str, str] | None = None
    ) -> UpstreamStream:
        started = perf_counter()
        try:
            call = self._parse(route, body)
            generations = self._start(call)
        except BadRequest as exc:
            reply = _error(exc)
            return UpstreamStream(reply.status, reply.headers, iter([reply.body]), wait_s=reply.wait_s)
        chunks = self._events(call, generations)
        # Generation time is spent while Warden pulls chunks, and Warden counts that pull time as upstream.
        return _LocalStream(
            200, dict(SSE_HEADERS), chunks, wait_s=perf_counter() - started, generations=generations
        )

    def close(self) -> None:
        # The engine may serve several upstream names; whoever built it closes it.
        pass

    # -- requests -------------------------------------------------------------------------------------

    def _parse(self, route: str, body: bytes) -> _Call:
        route = route.strip("/").removeprefix("v1/")
        if route not in (CHAT, COMPLETIONS):
            raise BadRequest(
                f"Unknown route '/v1/{route}' for a local model.", code="unknown_url", status=404
            )
        try:
            payload = parse_json(body)
        except ValueError:
            raise BadRequest("The request body is not valid JSON.") from None
        if not isinstance(payload, dict):
            raise BadRequest("The request body must be a JSON object.")
        _reject_unsupported(payload, route)
        if route == CHAT:
            prompt: str | list[int] = self._render(payload.get("messages"))
        else:
            prompt = _completion_prompt(payload.get("prompt"))
        stream = _optional(payload, "stream", bool, False)
        options = _optional(payload, "stream_options", dict, None)
        if options is not None and not stream:
            raise BadRequest("stream_options is only allowed when stream is true.", param="stream_options")
        include_usage = bool((options or {}).get("include_usage", False))
        n = _optional(payload, "n", int, 1)
        if not 1 <= n <= MAX_N:
            raise BadRequest(f"n must be between 1 and {MAX_N}.", param="n")
        return _Call(route, prompt, self._sampling(payload), n, stream, include_usage)

    def _render(self, messages: Any) -> str:
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages must be a non-empty array.", param="messages")
        plain = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise BadRequest(f"messages[{i}] must be an object with a role.", param=f"messages[{i}]")
            plain.append({**message, "content": _content_text(message.get("content"), i)})
        try:
            return self.engine.chat_prompt(plain)
        except ChatTemplateError as exc:
            raise BadRequest(str(exc), param="messages") from None

    def _sampling(self, payload: dict[str, Any]) -> SamplingParams:
        d = self.defaults
        temperature = _optional(payload, "temperature", float, d.get("temperature", 1.0))
        top_p = _optional(payload, "top_p", float, d.get("top_p", 1.0))
        max_tokens = _optional(payload, "max_completion_tokens", int, None)
        if max_tokens is None:
            max_tokens = _optional(payload, "max_tokens", int, d.get("max_tokens", DEFAULT_MAX_TOKENS))
        seed = _optional(payload, "seed", int, d.get("seed"))
        stop = payload.get("stop", d.get("stop"))
        if stop is None:
            stops: tuple[str, ...] = ()
        elif isinstance(stop, str):
            stops = (stop,)
        elif isinstance(stop, list) and len(stop) <= MAX_STOPS and all(isinstance(s, str) for s in stop):
            stops = tuple(stop)
        else:
            raise BadRequest(
                f"stop must be a string or an array of at most {MAX_STOPS} strings.", param="stop"
            )
        if not 0 <= temperature <= 2:
            raise BadRequest("temperature must be between 0 and 2.", param="temperature")
        if not 0 < top_p <= 1:
            raise BadRequest("top_p must be greater than 0 and at most 1.", param="top_p")
        if max_tokens is not None and max_tokens < 1:
            raise BadRequest("max_tokens must be at least 1.", param="max_tokens")
        return SamplingParams(
            temperature=temperature, top_p=top_p, max_tokens=max_tokens, stop=stops, seed=seed
        )

    def _start(self, call: _Call) -> list[Generation]:
        generations: list[Generation] = []
        params = call.params
        try:
            for i in range(call.n):
                # Choices must differ: with a seed, choice i samples with seed + i (reproducibly).
                seed = None if params.seed is None else params.seed + i
                generations.append(self.engine.generate(call.prompt, dataclasses.replace(params, seed=seed)))
        except PromptTooLong as exc:
            for generation in generations:
                generation.close()
            param = "messages" if call.route == CHAT else "prompt"
            raise BadRequest(str(exc), param=param, code="context_length_exceeded") from None
        except ValueError as exc:
            for generation in generations:
                generation.close()
            raise BadRequest(str(exc)) from None
        except EngineClosed as exc:
            raise UpstreamFailure("unreachable", self.name, str(exc)) from None
        return generations

    @contextlib.contextmanager
    def _running(self, generations: list[Generation]) -> Iterator[None]:
        """Engine failures become UpstreamFailure, and the generations are closed however the call
        ends: also when the client disconnects and Warden closes the stream (frees the batch rows)."""
        try:
            yield
        except EngineClosed as exc:
            raise UpstreamFailure("unreachable", self.name, str(exc)) from None
        except RuntimeError as exc:
            raise UpstreamFailure("bad_response", self.name, str(exc)) from None
        finally:
            for generation in generations:
                generation.close()

    @staticmethod
    def _usage(generations: list[Generation]) -> dict[str, int]:
        prompt = generations[0].prompt_tokens
        completion = sum(g.completion_tokens for g in generations)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    # -- streaming ------------------------------------------------------------------------------------

    def _events(self, call: _Call, generations: list[Generation]) -> Iterator[bytes]:
        chat = call.route == CHAT
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex}" if chat else f"cmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.model_name,
        }
        # With include_usage, OpenAI puts "usage": null on every chunk but the last.
        extra = {"usage": None} if call.include_usage else {}

        def event(choice: dict[str, Any]) -> bytes:
            return b"data: " + _dumps({**base, "choices": [choice], **extra}) + b"\n\n"

        def chat_choice(index: int, delta: dict[str, str], reason: str | None) -> dict[str, Any]:
            return {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}

        def text_choice(index: int, text: str, reason: str | None) -> dict[str, Any]:
            return {"index": index, "text": text, "logprobs": None, "finish_reason": reason}

        with self._running(generations):
            # Choices are generated side by side (one batch); they are sent one after the other.
            for index, generation in enumerate(generations):
                if chat:
                    yield event(chat_choice(index, {"role": "assistant", "content": ""}, None))
                for delta, reason in generation:
                    if delta:
                        yield event(
                            chat_choice(index, {"content": delta}, None)
                            if chat
                            else text_choice(index, delta, None)
                        )
                    if reason is not None:
                        yield event(
                            chat_choice(index, {}, reason) if chat else text_choice(index, "", reason)
                        )
            if call.include_usage:
                yield b"data: " + _dumps({**base, "choices": [], "usage": self._usage(generations)}) + b"\n\n"
            yield b"data: [DONE]\n\n"


@dataclass(slots=True)
class _LocalStream(UpstreamStream):
    """Closing it cancels the generations, whether or not anyone started reading the chunks."""

    generations: list[Generation] = field(default_factory=list)

    def close(self) -> None:
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()
        for generation in self.generations:
            generation.close()


def _optional(payload: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = payload.get(key)
    if value is None:
        return default
    # JSON has one number type: ints are fine where floats are wanted, bools never are numbers.
    if isinstance(value, bool) and kind is not bool:
        raise BadRequest(f"{key} must be a {kind.__name__}.", param=key)
    if kind is float and isinstance(value, int):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, kind):
        names = {float: "number", int: "integer", bool: "boolean", dict: "object"}
        raise BadRequest(f"{key} must be a {names.get(kind, kind.__name__)}.", param=key)
    return value


def _reject_unsupported(payload: dict[str, Any], route: str) -> None:
    # Parameters that would change the answer if honoured are refused; other unknown keys (user,
    # metadata, store...) are ignored, as OpenAI-compatible servers do.
    for key in ("tools", "functions"):
        if payload.get(key):
            raise BadRequest(f"{key} are not supported by this local model.", param=key)
    for key in ("presence_penalty", "frequency_penalty"):
        value = payload.get(key)
        if value not in (None, 0, 0.0):
            raise BadRequest(f"{key} is not supported by this local model.", param=key)
    if payload.get("logprobs") or payload.get("top_logprobs") or payload.get("logit_bias"):
        raise BadRequest("logprobs and logit_bias are not supported by this local model.", param="logprobs")
    response_format = payload.get("response_format")
    if response_format is not None and (
        not isinstance(response_format, dict) or response_format.get("type") != "text"
    ):
        raise BadRequest('Only response_format {"type": "text"} is supported.', param="response_format")
    completions_only = payload.get("echo") or payload.get("suffix") or payload.get("best_of") not in (None, 1)
    if route == COMPLETIONS and completions_only:
        raise BadRequest("echo, suffix and best_of are not supported by this local model.")


def _content_text(content: Any, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise BadRequest(
                    "Only text content parts are supported by this local model.",
                    param=f"messages[{index}].content",
                )
        return "".join(parts)
    raise BadRequest(
        f"messages[{index}].content must be a string or an array.", param=f"messages[{index}].content"
    )


def _completion_prompt(prompt: Any) -> str | list[int]:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, str):
        if not prompt:
            raise BadRequest("prompt must not be empty.", param="prompt")
        return prompt
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
    ):
        return prompt
    raise BadRequest("prompt must be a non-empty string or an array of token ids.", param="prompt")
