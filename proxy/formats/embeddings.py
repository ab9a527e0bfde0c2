"""OpenAI embeddings (`POST /v1/embeddings`): the texts are `input`, a string or a list of strings
(token arrays carry no text); the answer holds vectors, no text, and is never streamed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from proxy.formats import validation
from proxy.formats.base import Slot, StreamPiece, Usage, data_event, string_or_strings, usage_of


class EmbeddingsFormat:
    route = "embeddings"
    path = "embeddings"
    streams = False
    done_marker = True
    error_shape = "openai"

    def check(self, payload: dict[str, Any]) -> str:
        return validation.check_embedding(payload)

    def prompt(self, payload: dict[str, Any]) -> Any:
        return payload.get("input")

    def request_texts(self, payload: dict[str, Any]) -> Iterator[Slot]:
        return string_or_strings(payload, "input")

    def answer_texts(self, body: dict[str, Any]) -> Iterator[tuple[dict[str, Any], Slot | None]]:
        return iter(())

    def block_choice(self, choice: dict[str, Any]) -> None:
        return None

    def scrub(self, choice: dict[str, Any]) -> None:
        return None

    def summary(self, body: dict[str, Any]) -> tuple[Usage | None, str, int]:
        return usage_of(body), "", 0

    def stream_pieces(self, event: dict[str, Any]) -> Iterator[StreamPiece | None]:
        return iter(())

    def stream_usage(self, event: dict[str, Any], seen: Usage | None) -> Usage | None:
        return seen

    def stream_end(self, event: dict[str, Any]) -> bool:
        return False

    def stream_template(self, event: dict[str, Any]) -> dict[str, Any] | None:
        return None

    def stream_chunk(
        self, template: dict[str, Any], index: int, text: str | None, finish_reason: str | None
    ) -> dict[str, Any]:
        raise TypeError("embeddings are never streamed")

    def release_event(
        self, template: dict[str, Any], event: dict[str, Any], piece: StreamPiece, text: str
    ) -> dict[str, Any]:
        raise TypeError("embeddings are never streamed")

    def block_events(self, template: dict[str, Any], choices: list[int]) -> list[dict[str, Any]]:
        raise TypeError("embeddings are never streamed")

    def encode(self, event: dict[str, Any]) -> bytes:
        return data_event(event)

    def first_text(self, answer: Any) -> str:
        return ""


EMBEDDINGS = EmbeddingsFormat()
