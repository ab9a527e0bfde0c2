"""Wire formats: the only code that knows where a request's and an answer's texts are.

One module per format. Each says where a request's texts are and how to rewrite them (the input rules
see every one), where an answer's texts, finish reasons and usage are in a JSON body and in stream
events, and how to build a stream event of its own. Policies, transcripts, refusal detection and usage
accounting ask a `WireFormat` and never name a field. Imports nothing from the rest of `proxy` but
`proxy.errors` (validation answers in the OpenAI error shape) and `proxy.jsonbody` (the one parser of
JSON a client wrote, tool-call arguments included).
"""

from __future__ import annotations

from proxy.formats.base import WireFormat
from proxy.formats.chat import CHAT
from proxy.formats.completions import COMPLETIONS
from proxy.formats.embeddings import EMBEDDINGS
from proxy.formats.messages import COUNT_TOKENS, MESSAGES
from proxy.formats.responses import RESPONSES

# route name -> format, in the order routes are served and documented.
FORMATS: dict[str, WireFormat] = {
    f.route: f for f in (CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES, MESSAGES, COUNT_TOKENS)
}
_BY_PATH = {f.path: f for f in FORMATS.values()}


def served_at(path: str) -> WireFormat | None:
    """The format whose route is `path` (with or without the /v1 prefix), whatever the method: its
    error shape is the one every answer on that path is written in."""
    for prefix in ("/v1/", "/"):
        if path.startswith(prefix):
            return _BY_PATH.get(path[len(prefix) :])
    return None


__all__ = ["FORMATS", "WireFormat", "served_at"]
