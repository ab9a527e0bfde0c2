"""The OpenAI-compatible proxy: auth, routing, forwarding, the CLI."""
