"""The proxy: Warden's HTTP surfaces and everything that serves them.

Sub-packages, each with one job (its docstring says what it owns and must not import):
- `gateway`: the data plane: routes, forwarding, SSE relays, router, the exchange, validation.
- `formats`: the wire formats; the only code that knows where a request's or an answer's texts are.
- `upstreams`: where requests go: the `Upstream` protocol, HTTP, the local ONNX model, the fake.
- `identity`: who is calling: API keys, people, sessions, the permission guard, the audit log.
- `compliance`: envelope encryption, transcripts, exports, erasure.
- `cli`: the `warden` command.
Shared by them: `settings` (validated configuration), `db` (metadata tables), `errors` (the
OpenAI-style error shape), `jsonbody` (the one parser of request and upstream bodies), `web_headers`
(browser headers, trusted proxies), `migrate`, `server` (gunicorn).
"""
