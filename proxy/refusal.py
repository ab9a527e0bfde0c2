"""A cheap refusal detector, run on the answer at log time; only its yes/no is stored.

Phrase matching on the start of the first answer: crude, but stable across models, costs a few
microseconds and turns "is the model refusing more this week?" into a rate the dashboards can plot.
"""

from __future__ import annotations

import re
from typing import Any

_REFUSAL = re.compile(
    r"^\W*(?:i\s*(?:'m|am)\s+(?:sorry|afraid)|i\s+(?:can(?:'|no)t|cannot|won't|will not|am unable|'m unable)"
    r"|sorry,?\s+(?:but\s+)?i\s+(?:can|cannot|can't)|as an ai\b|i\s+must\s+decline)",
    re.IGNORECASE,
)


def first_answer(answer: Any) -> str:
    """The text of the first choice, from a JSON response's choices or a stream's accumulated text."""
    if not isinstance(answer, list) or not answer or not isinstance(answer[0], dict):
        return ""
    first = answer[0]
    message = first.get("message")
    text = message.get("content") if isinstance(message, dict) else first.get("content", first.get("text"))
    return text if isinstance(text, str) else ""


def is_refusal(answer: Any) -> bool:
    return bool(_REFUSAL.match(first_answer(answer)[:200]))
