"""Token ids to text, incrementally: UTF-8-safe detokenization and stop strings with hold-back."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer

REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    """Turns a stream of token ids into text deltas without ever splitting a character.

    Byte-level BPE tokens can end in the middle of a multi-byte character; decoding them alone yields
    U+FFFD. Like `tokenizers.decoders.DecodeStream` we decode a short window of recent ids and hold text
    back while it ends in U+FFFD, and unlike it we can `flush()` what is left when generation ends. The
    window (prefix) keeps decoders that depend on the previous token (spaces, byte fallback) correct.
    """

    __slots__ = ("_ids", "_prefix_offset", "_read_offset", "_tokenizer")

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def _decode(self, start: int, end: int | None = None) -> str:
        text: str = self._tokenizer.decode(self._ids[start:end], skip_special_tokens=True)
        return text

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        prefix = self._decode(self._prefix_offset, self._read_offset)
        text = self._decode(self._prefix_offset)
        if len(text) > len(prefix) and not text.endswith(REPLACEMENT):
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
            # Drop ids before the window so memory and decode cost stay flat on long generations.
            if self._prefix_offset > 64:
                del self._ids[: self._prefix_offset]
                self._read_offset -= self._prefix_offset
                self._prefix_offset = 0
            return text[len(prefix) :]
        return ""

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character decodes lossily, as U+FFFD)."""
        prefix = self._decode(self._prefix_offset, self._read_offset)
        text = self._decode(self._prefix_offset)
        self._prefix_offset = self._read_offset = len(self._ids)
        return text[len(prefix) :] if len(text) > len(prefix) else ""


class StopMatcher:
    """Cuts the text at the first stop string and never lets part of a stop string out.

    Text that could still grow into a stop string (a suffix that is a prefix of one) is held back until the
    next delta decides. Text already released can never be the start of a match: it was checked when it
    was held. The stop string itself is not part of the output, as in OpenAI's API.
    """

    __slots__ = ("_longest", "_pending", "_stops")

    def __init__(self, stops: Iterable[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._longest = max((len(s) for s in self._stops), default=0)
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Returns (text safe to release, whether a stop string was found)."""
        if not self._stops:
            return text, False
        pending = self._pending + text
        cut = min((i for i in (pending.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self._pending = ""
            return pending[:cut], True
        hold = 0
        for k in range(min(len(pending), self._longest - 1), 0, -1):
            tail = pending[-k:]
            if any(s.startswith(tail) for s in self._stops):
                hold = k
                break
        self._pending = pending[len(pending) - hold :]
        return pending[: len(pending) - hold], False

    def flush(self) -> str:
        pending, self._pending = self._pending, ""
        return pending
