"""The data plane: one request from arrival to its recorded event.

Owns the OpenAI-compatible routes, the `Forwarder`, the SSE relays, the `Router` and the `Exchange`.
Reads field names only through `proxy.formats`; never imports `proxy.cli`, `proxy.compliance.exports`
or the admin API.
"""
