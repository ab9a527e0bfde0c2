"""Prompt injection and jailbreaks: instructions smuggled into a prompt or a tool's result.

Patterns of the common families run on every reading of the text that policies.normalize gives
(folded, leetspeak, rot13, decoded base64/hex payloads). A family's score grows with the number of its
patterns that match (1 - product of misses); a disguise that had to be undone adds to it, since
benign text is rarely encoded instructions. A finding is `injection:<family>` when the score reaches
the threshold.

A verdict on the whole text (`windowed = False`): a decoded payload or a folded reading has no span in
the original, so nothing can be masked; in a stream the answer is judged once complete (flagged, not
retracted). Injection matters on input, tool results included, where texts arrive whole.

Patterns are heuristics, and they are written for English: a paraphrase or another language passes.
Every pattern is linear (tests/policies/test_regex_linear.py); gaps between words are bounded.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from policies.document import ParamError
from policies.findings import Finding
from policies.literal_prefix import literal_prefixes
from policies.normalize import views
from policies.scanners import known_keys, score, string_list

if TYPE_CHECKING:
    from policies.runtime import Runtime

PARAMS = ("threshold", "families", "model", "model_label")
MODEL_USES = ("auto", "off", "required")
MODEL_FAMILY = "classifier"  # the finding of the optional ONNX classifier: injection:classifier
_NOISY_VIEWS = ("leetspeak", "rot13")
# Up to three words between the parts of a phrase: "ignore all of the previous instructions".
_GAP = r"(?:[\s,]+[\w'-]+){0,3}?[\s,]+"
_PRIOR = r"(?:previous|prior|above|earlier|preceding|foregoing|initial|original|old|existing|system)"
_RULES = (
    r"(?:instructions?|rules|directions?|guidelines|prompts?|commands?|constraints|directives?"
    r"|programming|guardrails|restrictions|polic(?:y|ies))"
)
_SYSTEM = (
    r"(?:system|developer|hidden|initial|original|secret|internal|first|pre-?)[\s-]?"
    r"(?:prompt|instructions?|message|rules)"
)
# Not right after a quote: "'ignore previous instructions' became a meme" names the attack.
_UNQUOTED = "(?<![\"'\u2018\u2019\u201c\u201d])"

# family -> (pattern, weight). A weight is how sure one match alone makes us.
FAMILY_PATTERNS: dict[str, list[tuple[str, float]]] = {
    "instruction_override": [
        (
            _UNQUOTED + r"\b(?:ignore|disregard|forget|override|bypass|skip|drop|abandon|discard|neglect)\b"
            rf"{_GAP}{_PRIOR}\b{_GAP}?{_RULES}\b",
            0.9,
        ),
        (
            r"\b(?:ignore|disregard|forget)\s(?:all|everything|anything)\s(?:(?:you\s(?:were|have\sbeen)\s)?(?:told|said|instructed)|above|before|prior)\b",
            0.85,
        ),
        (
            r"\b(?:new|updated|real|actual|revised)\s(?:instructions?|rules|task|orders)\s?(?::|follow|are\b|is\b)",
            0.55,
        ),
        (
            rf"\b(?:do\snot|don't|stop|no\slonger)\s(?:follow|obey|adher(?:e|ing)\sto|comply(?:ing)?\swith)(?:ing)?\b{_GAP}?{_RULES}\b",
            0.75,
        ),
        (
            rf"\b(?:your|the)\s{_PRIOR}\s{_RULES}\s(?:are|is|have\sbeen)\s(?:void|cancell?ed|revoked|obsolete|no\slonger\svalid|overridden|replaced|lifted|suspended)",
            0.9,
        ),
        (r"\bfrom\snow\son,?\s(?:you\s(?:will|must|are|shall)|ignore|only|always)\b", 0.5),
        (
            r"\binstead,?\s(?:you\s(?:must|will|should)\s)?(?:say|output|print|respond\swith|reply\swith|write)\b",
            0.3,
        ),
    ],
    "roleplay": [
        (
            r"\b(?:dan|stan|dude|aim|kevin)\b[^.\n]{0,40}\b(?:do\sanything\snow|jailbr[oe]ken|no\s(?:restrictions|limits|rules|filters))",
            0.95,
        ),
        (r"\bdo\sanything\snow\b", 0.8),
        (r"\bjailbr(?:eak|oken)\b", 0.3),
        (
            r"\b(?:developer|admin|debug|sudo|dev)\smode\s(?:is\s)?(?:now\s)?(?:enabled|activated|unlocked|engaged)\b",
            0.45,
        ),
        (r"\b(?:god|unrestricted|jailbreak|jailbroken|dan|evil|unfiltered)\smode\b", 0.85),
        (
            r"\byou\s(?:will|must|shall)\snow\s(?:act|respond|answer|generate|be|pretend|simulate|comply)\b",
            0.35,
        ),
        (
            r"\b(?:comply\swith|obey|answer|fulfil+)\s(?:every|all|any)(?:thing|\s(?:requests?|questions?|commands?|orders?))\b",
            0.4,
        ),
        (r"\b(?:unfiltered|uncensored)\b", 0.3),
        (
            r"\b(?:act|pretend|play|roleplay|be)\b[^.\n]{0,30}\b(?:my|a)\s(?:deceased|dead|late)\s(?:grandma|grandmother|mother|father|grandpa)\b",
            0.6,
        ),
        (
            r"\b(?:enable|activate|enter|switch\sto|unlock)\s(?:the\s)?(?:developer|god|unrestricted|jailbreak|sudo|dev)\smode\b",
            0.85,
        ),
        (
            r"\byou\sare\sno\slonger\s(?:an?\s)?(?:ai|assistant|language\smodel|chatgpt|claude|bound|restricted|limited)\b",
            0.9,
        ),
        (
            r"\b(?:you(?:'re|\sare|\shave)?|been|are)\s(?:now\s)?(?:free|freed|liberated|released)\sfrom\s(?:all\s|your\s|the\s|any\s){0,3}(?:\w+\s){0,2}(?:restrictions|rules|guidelines|constraints|filters|limitations|policies|shackles|confines)\b",
            0.85,
        ),
        (
            r"\b(?:without|no|free\sof|ignoring)\s(?:any\s|all\s)?(?:ethical\s|moral\s|content\s|safety\s)?(?:restrictions|filters|censorship|guidelines|limitations|guardrails|morals|ethics|rules)\b",
            0.45,
        ),
        (
            r"\b(?:pretend|imagine|act\sas\sif|roleplay|role-play|play\sthe\srole|act\sas|you\sare\snow|you\swill\sbe|simulate)\b[^.\n]{0,80}\b(?:unfiltered|uncensored|unrestricted|amoral|unethical|evil|no\smorals|without\s(?:any\s)?(?:rules|limits|restrictions|filters|ethics))\b",
            0.85,
        ),
        (r"\b(?:stay|remain|keep)\sin\scharacter\b", 0.35),
        (r"\b(?:never|don't|do\snot|not)\s(?:refus(?:e|es|ing)|declines?|say\sno)\b", 0.35),
        (
            r"\b(?:opposite|evil|dark|shadow|unfiltered)\s(?:ai|assistant|twin|version|mode|persona|gpt)\b",
            0.5,
        ),
        (
            r"\b(?:hypothetical|fictional)\s(?:ai|model|world)\s(?:with(?:out)?|that\shas\sno)\s(?:no\s)?(?:rules|restrictions|limits|filters)\b",
            0.7,
        ),
        (r"\bgrandma\b[^.\n]{0,80}\b(?:used\sto|would)\s(?:tell|read|recite)\b", 0.45),
    ],
    "system_prompt_extraction": [
        (
            rf"\b(?:reveal|print|show|display|repeat|output|leak|tell\sme|give\sme|share|dump|recite|disclose|spell\sout|write\sout|list|what\s(?:is|are|was|were))\b{_GAP}?your\s(?:full\s|exact\s|complete\s|entire\s|original\s)?{_SYSTEM}\b",
            0.85,
        ),
        (
            rf"\b(?:reveal|print|show|display|repeat|output|leak|tell\sme|give\sme|share|dump|recite|disclose|spell\sout|write\sout|list|what\s(?:is|are|was|were))\b{_GAP}?the\s(?:full\s|exact\s|complete\s|entire\s)?(?:system|developer|hidden|secret|pre-?)[\s-]?(?:prompt|message|instructions)\b",
            0.85,
        ),
        (r"\b(?:instructions|prompt|rules)\syou\s(?:received|were\sgiven|have\sbeen\sgiven|got)\b", 0.6),
        (
            r"\b(?:repeat|print|output|copy|recite|echo)\s(?:back\s)?(?:all\s|everything\s|the\s){0,2}(?:(?:text|words|content|lines)\s)?(?:above|before\sthis|preceding|written\sabove|prior\sto\sthis)\b",
            0.7,
        ),
        (r"\b(?:everything|all|the\stext)\s(?:above|before)\s(?:this\s(?:line|message|point)|here)\b", 0.45),
        (r"\bverbatim\b", 0.25),
        (r"\b(?:starting|beginning)\swith\s[\"']?you\sare\b", 0.7),
        (r"\bwhat\s(?:were\syou|have\syou\sbeen)\s(?:told|instructed|programmed)\b", 0.7),
        (r"\b(?:in\sa\s)?code\sblock\b[^.\n]{0,40}\b(?:instructions|prompt)\b", 0.3),
    ],
    "delimiter": [
        (r"<\|?(?:im_start|im_end|system|endoftext|start_header_id|end_header_id|eot_id)\|?>", 0.4),
        (
            r"<\|?(?:im_start|start_header_id|system)\|?>\s?(?:system|assistant|developer|user)?\s?(?:<\|end_header_id\|>)?\s?(?:you|ignore|new|the\s|forget|from|disregard|reveal|print)",
            0.9,
        ),
        (r"<\|(?:endoftext|im_end|eot_id)\|>\s?\S", 0.6),
        (r"\[/?inst\]|<<\/?sys>>", 0.4),
        (r"\[inst\][^\n]{0,300}?\[/inst\]|\[/inst\][^\n]{0,300}?\[inst\]|<<sys>>[^\n]{0,300}?<</sys>>", 0.85),
        (r"(?<!\S)#{2,}\s?(?:system|instruction|new\sinstructions?|admin|developer)\b\s?:?", 0.6),
        (r"</?(?:system|system_prompt|instructions|admin|developer|user_query|context)>", 0.35),
        (r"<(system|system_prompt|instructions|admin|developer)>[^<\n]{1,300}</\1>", 0.75),
        (r"</(?:user_query|user|context|document|input)>\s?<", 0.7),
        (
            r"(?<!\S)(?:system|assistant|developer)\s?:\s(?:you|ignore|new|the\suser|override|from\snow)",
            0.55,
        ),
        (r"(?<!\S)assistant\s?:\s(?:sure|certainly|of\scourse|okay|ok)\b", 0.5),
        (r"\bend\sof\s(?:the\s)?(?:user\s|system\s)?(?:input|prompt|document|context|instructions)\b", 0.3),
        (r"(?<![-=*#])[-=*#]{4,}\s?(?:system|admin|new\sinstructions?|begin\sinstructions?)\b", 0.7),
        (r"\b(?:begin|start)\s(?:of\s)?(?:new\s|system\s|admin\s)(?:instructions?|prompt|message)\b", 0.6),
        (r"\"role\"\s?:\s?\"(?:system|developer)\"", 0.7),
    ],
    "tool_output": [
        (
            r"\b(?:attention|note|message|instructions?|important|urgent)\s?(?:to|for)\s(?:the\s|any\s|all\s)?(?:ai|assistant|llm|language\smodel|agent|chatbot|bot|model)s?\b",
            0.8,
        ),
        (
            r"\b(?:hey|dear|attention|hello)\s(?:ai|assistant|llm|agent|chatbot|gpt|claude|model)s?\b[\s,:!]",
            0.55,
        ),
        (r"\bif\syou\sare\san?\s(?:ai|assistant|llm|language\smodel|agent|bot)\b", 0.75),
        (
            r"\b(?:when|once|after|while)\s(?:you\s)?(?:read|see|process|summari[sz]e|parse|encounter)(?:ing)?\s(?:this|these)\b",
            0.45,
        ),
        (
            r"\b(?:send|forward|email|e-mail|post|upload|exfiltrate|transmit|leak)\b" + _GAP + "?"
            r"(?:the\s|all\s|this\s|their\s|the\suser's\s|user's\s|any\s){0,3}"
            r"(?:conversation|chat\shistory|credentials|passwords?|api\skeys?|tokens?|secrets?|emails|contacts|session|data)\b"
            r"[^.\n]{0,60}\b(?:to|at)\s(?:https?://[^\s]{0,200}(?:evil|attacker|collect|leak|log)|\S+@|attacker|me\b|this\s(?:address|url|endpoint))",
            0.85,
        ),
        (r"!\[[^\]\n]{0,100}\]\(https?://[^)\s]{1,300}[?&][\w-]{1,40}=[^)\s]{0,200}(?:\{|%7b|\$|<)", 0.8),
        (
            r"\b(?:do\snot|don't|never|without)\s(?:tell|inform|mention(?:ing)?|reveal|alert|notify)(?:ing)?\s(?:this\s(?:to\s)?)?(?:the\s)?user\b",
            0.75,
        ),
        (
            r"\b(?:call|invoke|use|run|execute)\sthe\s[\w.-]{1,40}\s(?:tool|function)\b[^.\n]{0,60}\b(?:immediately|now|silently|without)\b",
            0.6,
        ),
        (
            r"\b(?:the\s)?user\s(?:has\s)?(?:authori[sz]ed|approved|wants\syou\sto|asked\syou\sto)\b[^.\n]{0,60}\b(?:delete|transfer|send|wire|grant|disable|pay)\b",
            0.5,
        ),
        (
            r"\b(?:ai|assistant|llm|agent|model)s?\s(?:must|should|shall|will|need\sto|are\srequired\sto|is\srequired\sto)\s(?:now\s)?(?:reply|respond|send|say|output|include|reveal|call|ignore|forward|delete|transfer|rate|recommend)\b",
            0.6,
        ),
    ],
}
FAMILIES = tuple(FAMILY_PATTERNS)
# Undoing a disguise makes any match likelier to be an attack.
DISGUISE_BONUS = 0.15


def check(params: dict[str, Any], stage: str, action: str) -> None:
    known_keys(params, PARAMS)
    if "threshold" in params:
        score(params["threshold"], ("threshold",))
    families = string_list(params.get("families", list(FAMILIES)), ("families",))
    if not families:
        raise ParamError(("families",), f"name at least one family (known: {', '.join(FAMILIES)})")
    for i, family in enumerate(families):
        if family not in FAMILIES:
            raise ParamError(("families", i), f"unknown family (known: {', '.join(FAMILIES)})")
    if params.get("model", "auto") not in MODEL_USES:
        raise ParamError(("model",), f"must be one of {', '.join(MODEL_USES)}")
    if not isinstance(params.get("model_label", "injection"), str):
        raise ParamError(("model_label",), "must be a label of the injection model")
    if action == "mask":
        raise ParamError(
            (), "injection judges a whole text and cannot mask; use block, flag or log", "action"
        )


class _Rule:
    """A pattern, its weight, and the words its matches start with (a cheap test before the regex)."""

    __slots__ = ("pattern", "starts", "weight")

    def __init__(self, pattern: re.Pattern[str], weight: float) -> None:
        self.pattern = pattern
        self.weight = weight
        starts = literal_prefixes(pattern)
        self.starts = frozenset(starts) if starts is not None else None


class InjectionScanner:
    level = "text"
    windowed = False

    def __init__(
        self, threshold: float, families: tuple[str, ...], model: Any = None, model_label: str = ""
    ) -> None:
        self._threshold = threshold
        self._patterns = {
            family: [_Rule(re.compile(p), w) for p, w in FAMILY_PATTERNS[family]] for family in families
        }
        self._starts = frozenset(
            word for rules in self._patterns.values() for rule in rules for word in rule.starts or ()
        )
        # Which rules each start word can begin, so a reading tries only the rules whose words it holds:
        # benign text holds few, and looping over every rule cost more than the matching (issue 16).
        self._by_start: dict[str, list[tuple[str, int]]] = {}
        self._always: set[tuple[str, int]] = set()
        keys = [(family, i) for family, rules in self._patterns.items() for i in range(len(rules))]
        self._rank = {key: n for n, key in enumerate(keys)}
        for family, rules in self._patterns.items():
            for i, rule in enumerate(rules):
                if rule.starts is None:
                    self._always.add((family, i))
                for word in rule.starts or ():
                    self._by_start.setdefault(word, []).append((family, i))
        self._model = model
        self._model_label = model_label

    def model_score(self, text: str) -> float:
        """The classifier's score, the highest over the folded text and its decoded payloads: a model
        trained on plain text sees them plainly. Not over the leetspeak and rot13 readings, which
        every text has and which are noise to a model (the patterns look at those)."""
        seen: set[str] = set()
        best = 0.0
        for view in views(text):
            if view.how in _NOISY_VIEWS or view.text in seen or not view.text.strip():
                continue
            seen.add(view.text)
            best = max(best, self._model.scores(view.text)[self._model_label])
        return best

    def scores(self, text: str) -> dict[str, float]:
        """Each family's score: 0 when nothing matched."""
        misses = dict.fromkeys(self._patterns, 1.0)
        disguised = dict.fromkeys(self._patterns, False)
        # A pattern counts once, on the first reading it matches (the folded text comes first).
        matched: set[tuple[str, int]] = set()
        for view in views(text):
            candidates = set(self._always)
            for word in filter(view.text.__contains__, self._starts):
                candidates.update(self._by_start[word])
            # In the rules' own order: the product of misses, in floating point, depends on it.
            for family, i in sorted(candidates - matched, key=self._rank.__getitem__):
                rule = self._patterns[family][i]
                if rule.pattern.search(view.text) is None:
                    continue
                matched.add((family, i))
                misses[family] *= 1.0 - rule.weight
                disguised[family] = disguised[family] or bool(view.how)
        return {
            family: min(1.0, 1.0 - miss + (DISGUISE_BONUS if disguised[family] and miss < 1.0 else 0.0))
            for family, miss in misses.items()
        }

    def scan(self, text: str) -> list[Finding]:
        if not text.strip():
            return []
        found = [
            Finding(f"injection:{family}", round(value, 3))
            for family, value in self.scores(text).items()
            if value >= self._threshold and value > 0.0
        ]
        if self._model is not None:
            value = self.model_score(text)
            if value >= self._threshold:
                found.append(Finding(f"injection:{MODEL_FAMILY}", round(value, 3)))
        return found


def build(params: dict[str, Any], runtime: Runtime) -> InjectionScanner:
    from policies.scanners import ScannerUnavailable

    families = params.get("families", list(FAMILIES))
    use = params.get("model", "auto")
    model = runtime.injection_model() if use != "off" else None
    if model is None and use == "required":
        raise ScannerUnavailable("model: required, but policies.injection_model is not set")
    label = str(params.get("model_label", "injection"))
    if model is not None:
        # Exported classifiers name their labels as their authors did: INJECTION, Injection, injection.
        match = [name for name in model.labels if name.lower() == label.lower()]
        if not match:
            raise ScannerUnavailable(
                f"model_label {label!r} is not a label of the injection model "
                f"(its labels: {', '.join(model.labels)})"
            )
        label = match[0]
    return InjectionScanner(
        float(params.get("threshold", 0.5)),
        tuple([families] if isinstance(families, str) else families),
        model,
        label,
    )
