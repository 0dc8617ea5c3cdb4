"""A partner's program against the Python client generated from openapi/openapi.json.

tests/contract/test_clients.py generates the client as `referral_client` and type-checks this
file with mypy --strict: it is what a partner writes first, so every field it sets must be a
typed attribute of the generated models (never `additional_properties`).
"""

from __future__ import annotations

import datetime
import uuid

from referral_client import AuthenticatedClient
from referral_client.api.referrals import referrals_create, referrals_status
from referral_client.models import (
    Caregiver,
    CaregiverRelationship,
    ConcernCode,
    Concerns,
    Consent,
    Infant,
    Outcome,
    Problem,
    ReferralCreate,
    ReferralStatus,
    ReferralStatusPublic,
    Referrer,
    ReferrerRole,
    RiskFactorCode,
    Safeguarding,
)
from referral_client.types import Unset


def referral() -> ReferralCreate:
    return ReferralCreate(
        referrer=Referrer(name="Sam Carter", role=ReferrerRole.HEALTH_VISITOR),
        infant=Infant(
            given_name="Alex",
            family_name="Doe",
            nhs_number="9434765919",
            date_of_birth=datetime.date(2026, 6, 1),
        ),
        caregivers=[
            Caregiver(
                given_name="Jo",
                family_name="Doe",
                relationship=CaregiverRelationship.MOTHER,
            )
        ],
        postcode="OX4 1AA",
        concerns=Concerns(codes=[ConcernCode.BONDING_DIFFICULTIES], duration_weeks=6),
        risk_factors=[RiskFactorCode.DOMESTIC_ABUSE],
        safeguarding=Safeguarding(
            immediate_risk=False, child_protection_plan=False, child_in_need_plan=False
        ),
        consent=Consent(caregiver_consent=True, recorded_on=datetime.date(2026, 11, 20)),
    )


def explain(problem: Problem) -> str:
    """A 422 names each field and why; any other problem has its detail and request id."""
    if problem.status == 422 and not isinstance(problem.errors, Unset):
        return "; ".join(f"{error.field}: {error.message}" for error in problem.errors)
    return f"{problem.title}: {problem.detail} (request {problem.request_id})"


def submit_and_follow(base_url: str, token: str) -> str:
    client = AuthenticatedClient(base_url=base_url, token=token)
    created = referrals_create.sync_detailed(
        client=client, body=referral(), idempotency_key=str(uuid.uuid4())
    ).parsed
    if created is None:
        raise RuntimeError("the service answered with an undocumented status")
    if isinstance(created, Problem):
        return explain(created)
    nhs_number: str | None | Unset = created.infant.nhs_number
    outcome: Outcome = created.decision.outcome
    status = referrals_status.sync_detailed(uuid.UUID(created.id), client=client).parsed
    if not isinstance(status, ReferralStatusPublic):
        return "no status" if status is None else explain(status)
    waiting = status.status is ReferralStatus.AWAITING_TRIAGE
    return f"{status.reference} ({nhs_number}): {outcome.value}, awaiting triage: {waiting}"
