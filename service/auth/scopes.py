"""The scopes a token may carry (api-contract.md): what each caller is allowed to do."""

from __future__ import annotations

SCOPE_SUBMIT = "referrals:submit"
SCOPE_READ = "referrals:read"
SCOPE_TRIAGE = "referrals:triage"
# The caller's own organisation's audit events (its actors, its referrals).
SCOPE_AUDIT = "audit:read"
# The team's information governance: every audit event, and verifying the whole trail.
SCOPE_AUDIT_ALL = "audit:read_all"
# The caller's organisation's webhook subscriptions (notifications.md).
SCOPE_WEBHOOKS = "webhooks:manage"
ALL_SCOPES = frozenset(
    {SCOPE_SUBMIT, SCOPE_READ, SCOPE_TRIAGE, SCOPE_AUDIT, SCOPE_AUDIT_ALL, SCOPE_WEBHOOKS}
)
