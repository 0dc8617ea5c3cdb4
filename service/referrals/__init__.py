"""Referrals: the record, its statuses and moves, intake, queries and idempotency."""
