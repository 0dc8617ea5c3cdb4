"""The closed vocabularies of the referral schemas, each one named component in the document.

The rules' words (outcome, priority, urgency, criterion result) are defined in `eligibility`
and the statuses in `service.referrals.statuses`; they are re-exported here so that every
schema imports its vocabulary from one place and never spells a value inline.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import WithJsonSchema

from api.schemas.common import Code
from eligibility import CriterionResult, Outcome, Priority, Urgency
from service.referrals.statuses import ReferralStatus

__all__ = [
    "CODE_LIST_MARK",
    "CaregiverRelationship",
    "ConcernCode",
    "CriterionResult",
    "Outcome",
    "Priority",
    "ReferralStatus",
    "ReferrerRole",
    "RiskFactorCode",
    "ServiceInvolved",
    "StoredConcernCode",
    "StoredRiskFactorCode",
    "Urgency",
]


class ReferrerRole(StrEnum):
    health_visitor = "health_visitor"
    gp = "gp"
    midwife = "midwife"
    perinatal_mental_health = "perinatal_mental_health"
    children_social_care = "children_social_care"
    childrens_centre = "childrens_centre"
    camhs = "camhs"
    voluntary_sector = "voluntary_sector"
    self_referral = "self"
    other = "other"


class CaregiverRelationship(StrEnum):
    mother = "mother"
    father = "father"
    foster_carer = "foster_carer"
    grandparent = "grandparent"
    other = "other"


class ServiceInvolved(StrEnum):
    health_visiting = "health_visiting"
    gp = "gp"
    midwifery = "midwifery"
    perinatal_mental_health = "perinatal_mental_health"
    adult_mental_health = "adult_mental_health"
    children_social_care = "children_social_care"
    early_help = "early_help"
    camhs = "camhs"
    childrens_centre = "childrens_centre"
    voluntary_sector = "voluntary_sector"
    other = "other"


# The code lists belong to the active ruleset, not to the code: api.openapi_custom writes the
# `ConcernCode` and `RiskFactorCode` components (the ruleset's enums) and points every schema
# marked here at them (pydantic cannot emit a $ref to a component it does not define). The
# service refuses an unknown code with a 422 naming it.
CODE_LIST_MARK = "x-ruleset-code-list"
ConcernCode = Annotated[Code, WithJsonSchema({CODE_LIST_MARK: "ConcernCode"})]
RiskFactorCode = Annotated[Code, WithJsonSchema({CODE_LIST_MARK: "RiskFactorCode"})]
# The same components on responses, but read as plain strings: a stored referral is served
# whatever codes it was accepted with.
StoredConcernCode = Annotated[str, WithJsonSchema({CODE_LIST_MARK: "ConcernCode"})]
StoredRiskFactorCode = Annotated[str, WithJsonSchema({CODE_LIST_MARK: "RiskFactorCode"})]
