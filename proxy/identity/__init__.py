"""Identity: API keys (hashed, scoped, expiring), people and their role bindings, browser sessions,
the permission guard every route declares itself to, the hash-chained audit log, and the admin API.
Never imports `proxy.gateway`: who may do what does not depend on how requests are forwarded.
"""
