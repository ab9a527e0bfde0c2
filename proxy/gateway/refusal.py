"""A cheap refusal detector, run on the answer at log time; only its yes/no is stored.

Phrase matching on the start of the first answer: crude, but stable across models, costs a few
microseconds and turns "is the model refusing more this week?" into a rate the dashboards can plot.
"""

from __future__ import annotations

import re

_REFUSAL = re.compile(
    r"^\W*(?:i\s*(?:'m|am)\s+(?:sorry|afraid)|i\s+(?:can(?:'|no)t|cannot|won't|will not|am unable|'m unable)"
    r"|sorry,?\s+(?:but\s+)?i\s+(?:can|cannot|can't)|as an ai\b|i\s+must\s+decline)",
    re.IGNORECASE,
)


def is_refusal(text: str) -> bool:
    """True when the start of an answer's text reads as a refusal."""
    return bool(_REFUSAL.match(text[:200]))
