"""Incremental detokenization and stop strings, on the tiny model's real byte-level tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from proxy.upstreams.local.text import REPLACEMENT, IncrementalDecoder, StopMatcher

MULTIBYTE = "Grüße 🙂 日本語 ∑x — naïve"


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> Tokenizer:
    return Tokenizer.from_file(str(tiny_model / "tokenizer.json"))


def test_multibyte_characters_are_split_across_tokens_and_never_emitted_broken(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode(MULTIBYTE).ids
    # The premise: some token alone is not valid UTF-8 (a character spans tokens).
    assert any(REPLACEMENT in tokenizer.decode([i]) for i in ids)
    decoder = IncrementalDecoder(tokenizer)
    deltas = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(deltas) == MULTIBYTE
    assert not any(REPLACEMENT in d for d in deltas)


def test_flush_releases_an_incomplete_character_lossily(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("ok 🙂").ids
    decoder = IncrementalDecoder(tokenizer)
    out = "".join(decoder.push(i) for i in ids[:-1])
    assert REPLACEMENT not in out
    assert (out + decoder.flush()).endswith(REPLACEMENT)


def test_long_generations_keep_a_short_window(tokenizer: Tokenizer) -> None:
    text = "for x in range(10): print(x) " * 40
    decoder = IncrementalDecoder(tokenizer)
    assert "".join(decoder.push(i) for i in tokenizer.encode(text).ids) + decoder.flush() == text
    assert len(decoder._ids) < 80


def _run(stops: list[str], pieces: list[str]) -> tuple[list[str], bool]:
    matcher = StopMatcher(stops)
    out = []
    for piece in pieces:
        released, stopped = matcher.feed(piece)
        out.append(released)
        if stopped:
            return out, True
    out.append(matcher.flush())
    return out, False


def test_stop_string_split_across_pieces_is_cut_and_never_partly_released() -> None:
    out, stopped = _run(["END"], ["hello E", "N", "D tail"])
    assert stopped and "".join(out) == "hello "
    assert out == ["hello ", "", ""]


def test_held_back_prefix_is_released_once_it_cannot_match() -> None:
    out, stopped = _run(["ENDING"], ["go EN", "DI", "x and on"])
    assert not stopped
    assert out == ["go ", "", "ENDIx and on", ""]


def test_earliest_of_several_stop_strings_wins() -> None:
    out, stopped = _run(["bb", "a"], ["xxbb a"])
    assert stopped and "".join(out) == "xx"
    assert _run([], ["as is"]) == (["as is", ""], False)
