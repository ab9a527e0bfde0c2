"""A fast fake LLM API on loopback, for tests, benchmarks and offline demos.

It answers OpenAI's chat completions, completions, embeddings and Responses API, and Anthropic's
Messages API (`/v1/messages`, `/v1/messages/count_tokens`), in each one's wire format, JSON and
streamed. The reply echoes the last user message (or a fixed text of `words` words), streamed in
`chunks` pieces. Model names choose failure modes, on every path:

    fake-hang     never answers            fake-reset    closes the connection
    fake-garbage  200 with a non-JSON body fake-429/400/500  that HTTP error (Anthropic's shape on
    fake-cut      a stream that stops                          /v1/messages, OpenAI's elsewhere)
                  halfway (no [DONE], no completion event)
    fake-tools    answers with a tool call when tools are sent, unless the last input is a tool's
                  result: then with that result's text (an agent loop ends after one call)

`server.requests` keeps (path, body, headers) of recent POSTs, for tests that check what arrived.

    warden fake-upstream --port 9000 [--delay-ms 0] [--chunks 8]
"""

from proxy.upstreams.fake.replies import FakeBehaviour
from proxy.upstreams.fake.server import FakeUpstream

__all__ = ["FakeBehaviour", "FakeUpstream"]
