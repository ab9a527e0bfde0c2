"""The pipeline: run a policy's scanners on a text, apply the rules' actions, keep the record.

Every scanner of a stage sees the same text; masks are then applied together (overlaps settled in
policies.findings). A rule in `monitor` mode records what it would have done and changes nothing.
A scanner that raises blocks unless its rule says `on_error: allow`: failing open is a choice a
policy author makes explicitly, never a default.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, cast

from policies.document import Policy, Rule
from policies.findings import Finding, Placeholders, mask_spans
from policies.scanners import AnyScanner, RequestFacts, RequestScanner, Scanner, ScannerUnavailable, registry

if TYPE_CHECKING:
    from policies.runtime import Runtime

log = logging.getLogger(__name__)

RANK = {"allow": 0, "log": 1, "flag": 2, "mask": 3, "block": 4}
# The decision a recorded action amounts to, where it is not an action of its own.
_DECIDES = {"late": "flag", "monitor": "allow", "error": "flag"}


@dataclass(frozen=True, slots=True)
class Hit:
    stage: str
    rule: str
    finding: Finding
    # block | mask | flag | log, or monitor (mode monitor), error (scanner failed, on_error allow),
    # late (a block found by a whole-text check after a stream was delivered: flagged, not retracted)
    action: str

    @property
    def kind(self) -> str:
        return self.finding.kind


class Blocked(Exception):
    def __init__(self, hit: Hit) -> None:
        super().__init__(f"blocked by rule {hit.rule} ({hit.kind})")
        self.hit = hit


class Report:
    """Everything the policy did in one exchange: the decision and the findings, never the values."""

    __slots__ = ("blocked", "decision", "hits", "policy")

    def __init__(self, policy: str) -> None:
        self.policy = policy
        self.decision = "allow"
        self.hits: list[Hit] = []
        self.blocked: Hit | None = None

    def add(self, hit: Hit) -> None:
        self.hits.append(hit)
        decided = _DECIDES.get(hit.action, hit.action)
        if RANK[decided] > RANK[self.decision]:
            self.decision = decided
        if hit.action == "block" and self.blocked is None:
            self.blocked = hit

    def summary(self) -> list[tuple[str, str, str, int, float]]:
        """(stage, kind, action, count, max score) per distinct (stage, kind, action)."""
        grouped: dict[tuple[str, str, str], list[float]] = {}
        for hit in self.hits:
            grouped.setdefault((hit.stage, hit.kind, hit.action), []).append(hit.finding.score)
        return [(s, k, a, len(v), max(v)) for (s, k, a), v in grouped.items()]


class CompiledPolicy:
    """A policy with its scanners built (models loaded) for this process."""

    def __init__(self, policy: Policy, runtime: Runtime) -> None:
        self.policy = policy
        kinds = registry()
        self._rules: dict[str, list[tuple[Rule, AnyScanner]]] = {"input": [], "output": []}
        self.inactive: list[str] = []
        for rule in policy.rules:
            if rule.mode == "off":
                continue
            try:
                scanner = kinds[rule.scanner].build(rule.params, runtime)
            except ScannerUnavailable as exc:
                raise ScannerUnavailable(f"rule {rule.id}: {exc}") from None
            if scanner is None:
                self.inactive.append(rule.id)
                continue
            self._rules[rule.stage].append((rule, scanner))
        self._request_level = any(scanner.level == "request" for _, scanner in self._rules["input"])
        self._clean_max = runtime.clean_memo
        self._clean: OrderedDict[bytes, None] = OrderedDict()
        if self.inactive:
            log.info(
                "policy %s: rules without their model, inactive: %s", policy.label, ", ".join(self.inactive)
            )

    @property
    def label(self) -> str:
        return self.policy.label

    def has_rules(self, stage: str) -> bool:
        return bool(self._rules[stage])

    def has_request_rules(self) -> bool:
        return self._request_level

    def has_final_rules(self, stage: str) -> bool:
        return any(not scanner.windowed for _, scanner in self._rules[stage])

    # -- scanning ------------------------------------------------------------------------------

    def check_request(self, facts: RequestFacts, report: Report) -> None:
        """Request-level input rules (size, model); raises Blocked."""
        for rule, scanner in self._rules["input"]:
            if scanner.level != "request":
                continue
            # The level says which protocol a scanner implements.
            request_scanner = cast(RequestScanner, scanner)
            for hit in self._run(rule, "input", partial(request_scanner.scan_request, facts)):
                report.add(hit)
                if hit.action == "block":
                    raise Blocked(hit)

    def scan(
        self, stage: str, text: str, *, windowed: bool | None = None, scope: str | None = None
    ) -> list[Hit]:
        """Hits of the stage's text scanners; `windowed` picks span-local (True) or whole-text (False).

        With a `scope` (the tenant), a whole text that had no hits is remembered, as a keyed digest,
        and not scanned again by this compiled policy: chat clients send the system prompt and the
        whole history with every turn, and only the new turn needs the scanners. Only clean texts are
        remembered, so nothing of a finding outlives its request, and every text with a hit (a
        monitor-mode one included) is scanned each time. A reloaded policy starts afresh."""
        key = None
        if scope is not None and windowed is None and self._clean_max > 0:
            key = _clean_key(scope, stage, text)
            if key in self._clean:
                return []
        hits: list[Hit] = []
        for rule, scanner in self._rules[stage]:
            if scanner.level != "text" or (windowed is not None and scanner.windowed != windowed):
                continue
            text_scanner = cast(Scanner, scanner)
            hits.extend(self._run(rule, stage, partial(text_scanner.scan, text)))
        if key is not None and not hits:
            self._clean[key] = None
            if len(self._clean) > self._clean_max:
                with suppress(KeyError):  # another thread evicted first
                    self._clean.popitem(last=False)
        return hits

    def check_text(
        self,
        stage: str,
        text: str,
        placeholders: Placeholders,
        report: Report,
        *,
        windowed: bool | None = None,
        scope: str | None = None,
    ) -> str:
        """The text with masks applied; records the hits; raises Blocked."""
        hits = self.scan(stage, text, windowed=windowed, scope=scope)
        if not hits:
            return text
        for hit in hits:
            report.add(hit)
        if report.blocked is not None:
            raise Blocked(report.blocked)
        masks = [h.finding for h in hits if h.action == "mask"]
        return mask_spans(text, masks, placeholders, restorable=stage == "input") if masks else text

    @staticmethod
    def _run(rule: Rule, stage: str, call: Callable[[], list[Finding]]) -> list[Hit]:
        try:
            findings = call()
        except Exception as exc:
            # The type only: a scanner's message may quote the text it was scanning.
            log.warning("scanner %s of rule %s failed: %s", rule.scanner, rule.id, type(exc).__name__)
            failed = Finding(f"error:{rule.scanner}", 1.0)
            return [Hit(stage, rule.id, failed, "block" if rule.on_error == "block" else "error")]
        if rule.mode == "monitor":
            return [Hit(stage, rule.id, f, "monitor") for f in findings]
        return [Hit(stage, rule.id, f, f.action or rule.action) for f in findings]


def _clean_key(scope: str, stage: str, text: str) -> bytes:
    # A digest, not the text: what is remembered says only that some text of this scope was clean.
    digest = hashlib.blake2b(digest_size=16, person=b"warden-clean")
    for part in (scope, stage):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.digest()
