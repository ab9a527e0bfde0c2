"""Compliance: envelope encryption of transcripts (per-tenant data keys, crypto-shredding), reading a
transcript with a reason, signed exports, and erasure. Never imports `proxy.gateway`.
"""
