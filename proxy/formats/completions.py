"""OpenAI (legacy) completions (`POST /v1/completions`): the texts are `prompt`, a string or a list of
strings; token arrays carry no text and are left alone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from proxy.formats import validation
from proxy.formats.base import Slot, string_or_strings
from proxy.formats.choices import Choices


class CompletionsFormat(Choices):
    route = "completions"
    path = "completions"

    def __init__(self) -> None:
        super().__init__(delta_events=False)

    def check(self, payload: dict[str, Any]) -> str:
        return validation.check_completion(payload)

    def prompt(self, payload: dict[str, Any]) -> Any:
        return payload.get("prompt")

    def request_texts(self, payload: dict[str, Any]) -> Iterator[Slot]:
        return string_or_strings(payload, "prompt")


COMPLETIONS = CompletionsFormat()
