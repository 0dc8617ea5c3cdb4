"""Texts of the default ruleset, typed by hand as expected values for the tests."""

from __future__ import annotations

STEP_UP_STEPS = (
    "A clinician from the parent-infant team will review the referral and contact the referrer "
    "to arrange an assessment; until then the outcome is provisional.",
)
STEP_DOWN_STEPS = (
    "Health-visitor-led support for the family, with consultation from the parent-infant team.",
    "A group programme for parents and babies.",
)
ALERT_STEP = (
    "Contact children's social care (or the police) now and follow your local safeguarding "
    "procedures: this referral does not replace them."
)
