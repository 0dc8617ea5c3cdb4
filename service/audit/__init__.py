"""The tamper-evident audit trail: hash chains, verification, queries and anchors."""
