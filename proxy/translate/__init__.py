"""Translation between LLM wire APIs, so clients of one API reach upstreams that speak another.

Three APIs: `chat.completions` (OpenAI Chat Completions), `responses` (OpenAI Responses) and
`messages` (Anthropic Messages). Translated pairs, client -> upstream:

| client             | upstream           | module                                   |
|--------------------|--------------------|------------------------------------------|
| `responses`        | `chat.completions` | `responses_chat`, `responses_chat_stream` |
| `messages`         | `chat.completions` | `messages_chat`, `messages_chat_stream`   |
| `chat.completions` | `messages`         | `chat_messages`, `chat_messages_stream`   |
| `responses`        | `messages`         | the first and third chained (`compose`)   |

The pieces both directions share: `content` (text and images), `tools`, `reasons` (finish and stop
reasons), `usage`, `ids`, `errors` (error shapes and status mapping), `sse` (reading and writing
event streams), `response_objects`. Pure: imports only the standard library and `proxy.jsonbody`.
"""

from __future__ import annotations

from proxy.translate.base import (
    CHAT,
    MESSAGES,
    RESPONSES,
    StreamTranslator,
    Translation,
    Untranslatable,
)
from proxy.translate.chat_messages import ChatToMessages
from proxy.translate.compose import compose
from proxy.translate.messages_chat import MessagesToChat
from proxy.translate.responses_chat import ResponsesToChat, client_param

_TRANSLATIONS: dict[tuple[str, str], Translation] = {
    (RESPONSES, CHAT): ResponsesToChat(),
    (MESSAGES, CHAT): MessagesToChat(),
    (CHAT, MESSAGES): ChatToMessages(),
    (RESPONSES, MESSAGES): compose(ResponsesToChat(), ChatToMessages(), rename=client_param),
}
# (client, upstream) pairs that translation() serves.
SUPPORTED = frozenset(_TRANSLATIONS)


def translation(client: str, upstream: str) -> Translation | None:
    """How a `client` API request reaches an `upstream` API: None when they are the same API, KeyError
    when it cannot (embeddings or completions to Anthropic, anything to the Responses API)."""
    if client == upstream:
        return None
    try:
        return _TRANSLATIONS[(client, upstream)]
    except KeyError:
        raise KeyError(f"no translation from the {client} API to the {upstream} API") from None


__all__ = [
    "CHAT",
    "MESSAGES",
    "RESPONSES",
    "SUPPORTED",
    "StreamTranslator",
    "Translation",
    "Untranslatable",
    "compose",
    "translation",
]
