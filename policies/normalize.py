"""Undo the disguises prompt injections wear, so one set of patterns sees through them.

`views(text)` returns the texts a detector should read: the text folded (NFKC, look-alike letters to
Latin, invisible characters dropped, Unicode tag characters read as the ASCII they smuggle, case and
spacing folded), its leetspeak reading, its rot13 reading, and a few base64 or hex payloads that
decode to readable text. The work is bounded whatever the input: every pattern here is linear, at most
`MAX_PAYLOADS` payloads of at most `MAX_PAYLOAD_CHARS` are decoded, and a decoded payload is folded
but never decoded again (no recursion on attacker input).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from dataclasses import dataclass

MAX_PAYLOADS = 4
MAX_PAYLOAD_CHARS = 8192
# A decoded payload counts as text when this share of its characters is printable.
PRINTABLE_SHARE = 0.9

# Zero-width and other invisible format characters that split a word without showing.
_INVISIBLE = dict.fromkeys(
    [
        *(0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x3164, 0xFEFF, 0xFFA0),
        *range(0x200B, 0x2010),
        *range(0x202A, 0x202F),
        *range(0x2060, 0x2070),
        *range(0xFE00, 0xFE10),
    ],
    None,
)
# Unicode tag characters (U+E0020..E007E) mirror ASCII and render as nothing: "ASCII smuggling". A run
# is read as a separate phrase, so the visible word before it does not hide its first word.
_TAGS = {0xE0000 + c: chr(c) for c in range(0x20, 0x7F)} | {0xE0001: None, 0xE007F: None}
_TAG_RUN = re.compile("[\U000e0001\U000e0020-\U000e007f]+")
# Letters NFKC leaves alone that look Latin: Cyrillic, Greek and a few IPA letters.
_CONFUSABLES = str.maketrans(
    "аАвВеЕёЁкКмМнНоОрРсСтТуУхХіІїЇјЈѕЅԁһӏɑɡɩοΟαΑβΒεΕηΗιΙκΚνΝρΡτΤυΥχΧζΖμΜ",
    "aAbBeEeEkKmMhHoOpPcCtTyYxXiIiIjJsSdhlagioOaABBeEnHiIkKvNpPtTuUxXzZuM",
)
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "|": "l"}
)
_SPACE = re.compile(r"\s+")
# Runs long enough to hide a sentence; shorter ones are ids and hashes not worth decoding.
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{20,}={0,2}")
_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}[ :]?){12,}")


@dataclass(frozen=True, slots=True)
class View:
    """One reading of a text. `how` names the disguise undone ("" for the folded text itself)."""

    text: str
    how: str


def fold(text: str) -> str:
    """The text as a reader sees it: invisible characters dropped, tags read, look-alikes made Latin,
    compatibility forms (fullwidth, mathematical letters) made plain, lower case, single spaces."""
    text = _TAG_RUN.sub(lambda m: f" {m.group(0).translate(_TAGS)} ", text.translate(_INVISIBLE))
    text = unicodedata.normalize("NFKC", text).translate(_CONFUSABLES)
    return _SPACE.sub(" ", text).casefold()


def views(text: str) -> list[View]:
    """The folded text, its leetspeak and rot13 readings, and its decodable payloads (bounded)."""
    folded = fold(text)
    found = [View(folded, "")]
    leet = folded.translate(_LEET)
    if leet != folded:
        found.append(View(leet, "leetspeak"))
    found.append(View(codecs.encode(folded, "rot13"), "rot13"))
    found.extend(View(fold(decoded), how) for decoded, how in _payloads(text))
    return found


def _payloads(text: str) -> list[tuple[str, str]]:
    decoded: list[tuple[str, str]] = []
    for pattern, how in ((_HEX, "hex"), (_BASE64, "base64")):
        for match in pattern.finditer(text):
            if len(decoded) >= MAX_PAYLOADS:
                return decoded
            run = match.group(0)[:MAX_PAYLOAD_CHARS]
            plain = _decode_hex(run) if how == "hex" else _decode_base64(run)
            if plain is not None:
                decoded.append((plain, how))
    return decoded


def _decode_hex(run: str) -> str | None:
    try:
        raw = bytes.fromhex(run.replace(" ", "").replace(":", ""))
    except ValueError:
        return None
    return _readable(raw)


def _decode_base64(run: str) -> str | None:
    body = run.rstrip("=")
    padded = body + "=" * (-len(body) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None
    return _readable(raw)


def _readable(raw: bytes) -> str | None:
    try:
        plain = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(1 for c in plain if c.isprintable() or c in "\n\t\r")
    return plain if plain and printable >= PRINTABLE_SHARE * len(plain) else None
