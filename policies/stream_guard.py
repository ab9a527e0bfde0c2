"""StreamGuard: the output policy applied to a streamed answer as it arrives.

Text is released in pieces. Before a piece goes out, a bounded window (a little already-released
context, then everything held) is scanned by the span-local scanners (PII, secrets, terms). The
guard keeps back the last `holdback` characters, moved earlier so the cut never falls inside a
finding, a word or a placeholder: an entity or placeholder is therefore never split between two
pieces, and a block stops the stream before the blocked text is sent. Each character is scanned a
bounded number of times; the accumulated answer is never re-scanned per chunk.

Whole-text scanners (toxicity) run once at the end on the complete answer; they can flag it, but
what was streamed cannot be taken back.
"""

from __future__ import annotations

from policies.engine import Blocked, CompiledPolicy, Hit, Report
from policies.findings import PLACEHOLDER_MAX, Finding, Placeholders, mask_spans

STEP = 16  # characters gathered beyond the hold-back before scanning again
# The released context is only there for context words and word boundaries. With its digits and '@'
# blanked, no pattern can start in already-sent text and swallow the start of the next entity
# (e.g. the tail of one card number joined to the next one): the window then finds what a scan of
# the whole text finds.
_NEUTRAL = str.maketrans("0123456789@<>", "xxxxxxxxxxxxx")


class StreamGuard:
    def __init__(
        self,
        policy: CompiledPolicy,
        placeholders: Placeholders,
        report: Report,
        *,
        restore: bool,
        holdback: int,
        scan: bool = True,
        json_text: bool = False,
    ) -> None:
        self._policy = policy
        self._placeholders = placeholders
        self._report = report
        self._restore = restore
        self._json_text = json_text  # the text is JSON source: restored values are JSON-escaped
        self._scan = scan and policy.has_rules("output")
        # Without output scanners only placeholders need holding back, and only the longest one.
        floor = placeholders.longest if restore else 0
        self._holdback = max(holdback, floor) if self._scan else max(floor, 1)
        self._step = STEP if self._scan else 1
        self._overlap = self._holdback
        self._first = True
        self._context = ""
        self._pending = ""
        self.released: list[str] = []  # upstream text released so far (before restoration)

    def feed(self, delta: str) -> str:
        """Text the client may see now (possibly empty). Raises Blocked."""
        self._pending += delta
        # The first piece goes out as soon as anything is past the hold-back (time to first token);
        # later scans wait for a few more characters so that short deltas do not each cost a scan.
        if len(self._pending) <= self._holdback + (0 if self._first else self._step):
            return ""
        released = self._release(final=False)
        if released:
            self._first = False
        return released

    def finish(self) -> str:
        """The rest, at the end of the choice. Raises Blocked."""
        return self._release(final=True) if self._pending else ""

    def text(self) -> str:
        return "".join(self.released)

    def _release(self, *, final: bool) -> str:
        window = self._context + self._pending
        start = len(self._context)
        hits = self._policy.scan("output", window, windowed=True) if self._scan else []
        spans = sorted((h.finding for h in hits if h.finding.has_span), key=lambda f: f.start)
        cut = len(window) if final else self._cut(window, start, spans)
        if cut <= start:
            return ""
        mine = [h for h in hits if _starts_in(h.finding, start, cut)]
        for hit in mine:
            self._report.add(hit)
        blocked = next((h for h in mine if h.action == "block"), None)
        if blocked is not None:
            raise Blocked(blocked)
        piece = window[start:cut]
        masks = [_shift(h.finding, -start) for h in mine if h.action == "mask"]
        if masks:
            piece = mask_spans(piece, masks, self._placeholders, restorable=False)
        self.released.append(piece)
        self._context = window[max(cut - self._overlap, 0) : cut].translate(_NEUTRAL)
        self._pending = window[cut:]
        return self._placeholders.restore(piece, json_text=self._json_text) if self._restore else piece

    def _cut(self, window: str, start: int, spans: list[Finding]) -> int:
        cut = len(window) - self._holdback
        space = max(window.rfind(" ", start, cut), window.rfind("\n", start, cut))
        if space >= start:
            cut = space + 1
        for span in reversed(spans):  # never inside a finding (moving left may reach an earlier one)
            if span.start < cut < span.end:
                cut = span.start
        opening = window.rfind("<", max(start, cut - PLACEHOLDER_MAX), cut)
        if opening >= 0 and ">" not in window[opening:cut]:
            cut = opening
        return cut


def _starts_in(finding: Finding, start: int, cut: int) -> bool:
    if not finding.has_span:
        return True
    return start <= finding.start < cut


def _shift(finding: Finding, by: int) -> Finding:
    return Finding(
        finding.kind, finding.score, finding.start + by, finding.end + by, finding.label, finding.action
    )


__all__ = ["Blocked", "Hit", "StreamGuard"]
