"""Safety and PII policies (scanners return findings; one pipeline applies actions)."""
