"""The policy applied to one exchange's texts, through its wire format: the input rules on every text a
request carries before it goes upstream, the output rules on every text of a JSON answer before it goes
back. Returns what it did; writes into no shared object. (Streamed answers: `relay.GuardedSseRelay`.)"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from policies.engine import Blocked
from policies.scanners import RequestFacts
from proxy.errors import ProxyError
from proxy.formats import WireFormat
from proxy.gateway.exchange import AppliedPolicy


@dataclass(frozen=True, slots=True)
class CheckedRequest:
    body: bytes  # what goes upstream: the client's bytes, re-encoded only when a mask changed a text
    prompt: Any  # what a transcript keeps of the request (masked)


@dataclass(frozen=True, slots=True)
class CheckedAnswer:
    changed: bool  # the answer's JSON was rewritten (masks, restored values, a filtered choice)
    kept: list[dict[str, Any]]  # per choice, the text after output masks and before restoration


def check_request(
    applied: AppliedPolicy, fmt: WireFormat, model: str, payload: dict[str, Any], raw: bytes
) -> CheckedRequest:
    """Apply the input rules to every text of `payload` (rewritten in place). Raises ProxyError (400)
    when a rule blocks: the upstream is never called and the prompt is not kept."""
    compiled, report = applied.policy, applied.report
    if not compiled.has_rules("input"):
        return CheckedRequest(raw, fmt.prompt(payload))
    try:
        slots = list(fmt.request_texts(payload))
        if compiled.has_request_rules():  # sizes are only worth counting for a rule that reads them
            chars = sum(len(s.text) for s in slots)
            compiled.check_request(
                RequestFacts(model, fmt.route, chars, sum(len(s.text.encode()) for s in slots)), report
            )
        changed = False
        for slot in slots:
            checked = compiled.check_text(
                "input", slot.text, applied.placeholders, report, scope=applied.scope
            )
            if checked != slot.text:
                slot.write(checked)
                changed = True
    except Blocked as blocked:
        hit = blocked.hit
        raise ProxyError(
            400,
            f"The request was blocked by policy {compiled.label}, rule {hit.rule!r} ({hit.kind}).",
            code="content_policy_violation",
        ) from None
    if not changed:
        return CheckedRequest(raw, fmt.prompt(payload))
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return CheckedRequest(body, fmt.prompt(payload))


def check_answer(applied: AppliedPolicy, fmt: WireFormat, parsed: dict[str, Any]) -> CheckedAnswer:
    """Apply the output rules to every text of a JSON answer (contents, refusals, tool-call arguments),
    in place, and restore input placeholders. A block empties the whole choice; a changed text drops
    the choice's logprobs, which would otherwise repeat the original token by token."""
    compiled, placeholders = applied.policy, applied.placeholders
    restore = compiled.policy.restore
    changed = False
    kept: dict[int, dict[str, Any]] = {}
    blocked: set[int] = set()
    for choice, slot in fmt.answer_texts(parsed):
        index = choice.get("index", 0)
        index = index if isinstance(index, int) else 0
        if slot is None or id(choice) in blocked:
            continue
        record = kept.setdefault(index, {"index": index})
        try:
            masked = compiled.check_text(
                "output", slot.text, placeholders, applied.report, scope=applied.scope
            )
        except Blocked:
            fmt.block_choice(choice)
            blocked.add(id(choice))
            kept[index] = {"index": index, "content": "", "finish_reason": "content_filter"}
            changed = True
            continue
        final = placeholders.restore(masked, json_text=slot.json_text) if restore else masked
        if final != slot.text:
            slot.write(final)
            fmt.scrub(choice)
            changed = True
        if slot.field in ("content", "refusal") and slot.field not in record:
            record[slot.field] = masked
        elif slot.field in ("content", "refusal"):
            record[slot.field] += masked
        else:
            record.setdefault(slot.field, []).append(masked)
    return CheckedAnswer(changed, [kept[i] for i in sorted(kept)])
