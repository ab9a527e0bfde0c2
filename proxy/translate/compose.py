"""Chaining two translations: a client API served through a middle API by a third.

`compose(outer, inner)` serves `outer.client` from `inner.upstream`, where `outer.upstream` is
`inner.client` (responses -> chat -> messages). Requests go through the outer translation, then the
inner one; answers, streams and errors come back through the inner one, then the outer one. A stream
is two translators in a row, the first one's output fed to the second; the inner one is made for the
middle request, which `stream()` translates again from the client's (so that request must be one
`request()` accepted).

An Untranslatable raised by the inner step names a field of the middle API, which the client never
sent: `rename` maps it back to the client's field (None when there is no single one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from proxy.translate.base import StreamTranslator, Translation, Untranslatable


def _unchanged(param: str | None) -> str | None:
    return param


@dataclass(frozen=True)
class Composed(Translation):
    outer: Translation = field(kw_only=True)
    inner: Translation = field(kw_only=True)
    rename: Callable[[str | None], str | None] = field(kw_only=True, default=_unchanged)

    def request(self, payload: dict[str, Any]) -> dict[str, Any]:
        middle = self.outer.request(payload)
        try:
            return self.inner.request(middle)
        except Untranslatable as refused:
            raise Untranslatable(refused.message, self.rename(refused.param)) from None

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.outer.answer(self.inner.answer(body))

    def stream(self, request: dict[str, Any]) -> StreamTranslator:
        # The inner translator reads the middle request (its stream options), the outer one the client's.
        return _Chain(self.inner.stream(self.outer.request(request)), self.outer.stream(request))

    def error(self, status: int, body: Any) -> dict[str, Any]:
        return self.outer.error(status, self.inner.error(status, body))


class _Chain:
    def __init__(self, first: StreamTranslator, second: StreamTranslator) -> None:
        self._first = first
        self._second = second

    def feed(self, chunk: bytes) -> bytes:
        return self._second.feed(self._first.feed(chunk))

    def finish(self) -> bytes:
        return self._second.feed(self._first.finish()) + self._second.finish()


def compose(
    outer: Translation, inner: Translation, rename: Callable[[str | None], str | None] = _unchanged
) -> Composed:
    if outer.upstream != inner.client:
        raise ValueError(
            f"cannot chain {outer.client}->{outer.upstream} with {inner.client}->{inner.upstream}"
        )
    return Composed(
        client=outer.client,
        upstream=inner.upstream,
        upstream_path=inner.upstream_path,
        outer=outer,
        inner=inner,
        rename=rename,
    )
