"""Upstreams: the `Upstream` protocol (complete, stream) and its implementations: OpenAI-compatible
HTTP, the local ONNX model (`local`), and the fake used by tests and benchmarks. Imports nothing from
`proxy.gateway`, `proxy.identity` or `proxy.compliance`: an upstream moves bytes and knows no caller.
"""
