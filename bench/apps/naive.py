"""E1, a naive peer: what a competent team builds in a day.

FastAPI + SQLModel with a synchronous session (so the route runs in the thread pool), the
token decoded with python-jose on each request from the PEM, a referral row and an audit row
whose previous hash comes from `SELECT … ORDER BY id DESC LIMIT 1 FOR UPDATE`, and the
engine's default pool settings. No rules, no idempotency.

Configured by BENCH_NAIVE_DATABASE_URL (a sync URL: postgresql+psycopg://… or sqlite:///…),
BENCH_JWT_PUBLIC_KEY_FILE, BENCH_JWT_ISSUER and BENCH_JWT_AUDIENCE. Its tables are named
naive_* so that they can never clash with the service's own.

No `from __future__ import annotations` here: FastAPI must see the dependencies' annotations
as objects, and they are local to create_app().
"""

import hashlib
import json
import os
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException
from jose import JWTError, jwt
from pydantic import BaseModel, Field
from sqlalchemy import JSON, Column
from sqlmodel import Field as SQLField
from sqlmodel import Session, SQLModel, create_engine, select


class NaiveReferral(SQLModel, table=True):
    __tablename__ = "naive_referral"

    id: str = SQLField(primary_key=True)
    org: str
    submitted_by: str
    received_at: datetime
    status: str = "awaiting_triage"
    payload: dict[str, Any] = SQLField(sa_column=Column(JSON, nullable=False))


class NaiveAuditEvent(SQLModel, table=True):
    __tablename__ = "naive_audit_event"

    id: int | None = SQLField(default=None, primary_key=True)
    occurred_at: datetime
    actor: str
    action: str
    referral_id: str
    prev_hash: str
    hash: str


class Referrer(BaseModel):
    name: str
    role: str
    email: str | None = None
    phone: str | None = None


class Infant(BaseModel):
    given_name: str | None = None
    family_name: str | None = None
    nhs_number: str | None = Field(default=None, pattern=r"^[0-9]{10}$")
    date_of_birth: date | None = None
    expected_due_date: date | None = None


class Caregiver(BaseModel):
    given_name: str
    family_name: str
    relationship: Literal["mother", "father", "foster_carer", "grandparent", "other"]
    phone: str | None = None
    nhs_number: str | None = None


class Concerns(BaseModel):
    codes: list[str] = Field(min_length=1)
    description: str | None = Field(default=None, max_length=4000)
    duration_weeks: int | None = None


class Safeguarding(BaseModel):
    immediate_risk: bool
    child_protection_plan: bool
    child_in_need_plan: bool


class Consent(BaseModel):
    caregiver_consent: bool
    recorded_on: date


class ReferralIn(BaseModel):
    referrer: Referrer
    infant: Infant
    caregivers: list[Caregiver] = Field(min_length=1)
    postcode: str
    concerns: Concerns
    risk_factors: list[str] = []
    safeguarding: Safeguarding
    diagnosis: str | None = None
    consent: Consent
    referrer_urgency: Literal["routine", "urgent"] = "routine"
    services_involved: list[str] = []


def create_tables(database_url: str) -> None:
    engine = create_engine(database_url)
    SQLModel.metadata.create_all(
        engine, tables=[NaiveReferral.__table__, NaiveAuditEvent.__table__]
    )
    engine.dispose()


def create_app() -> FastAPI:
    engine = create_engine(os.environ["BENCH_NAIVE_DATABASE_URL"])  # default pool settings
    with open(os.environ["BENCH_JWT_PUBLIC_KEY_FILE"]) as f:
        public_key = f.read()
    issuer = os.environ["BENCH_JWT_ISSUER"]
    audience = os.environ["BENCH_JWT_AUDIENCE"]

    app = FastAPI()

    def get_session() -> Any:
        with Session(engine) as session:
            yield session

    def get_claims(authorization: Annotated[str, Header()]) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                authorization.removeprefix("Bearer "),
                public_key,
                algorithms=["RS256"],
                audience=audience,
                issuer=issuer,
            )
        except JWTError:
            raise HTTPException(status_code=401, detail="invalid token") from None
        if "referrals:submit" not in claims.get("scope", "").split():
            raise HTTPException(status_code=403, detail="insufficient scope")
        return claims

    @app.post("/v1/referrals", status_code=201)
    def create_referral(
        body: ReferralIn,
        claims: Annotated[dict[str, Any], Depends(get_claims)],
        session: Annotated[Session, Depends(get_session)],
    ) -> NaiveReferral:
        now = datetime.now(UTC)
        referral = NaiveReferral(
            id=str(uuid.uuid4()),
            org=claims["org"],
            submitted_by=claims["sub"],
            received_at=now,
            payload=body.model_dump(mode="json"),
        )
        session.add(referral)
        last = session.exec(
            select(NaiveAuditEvent)
            .order_by(NaiveAuditEvent.id.desc())  # type: ignore[union-attr]
            .limit(1)
            .with_for_update()
        ).first()
        prev_hash = last.hash if last else "0" * 64
        event = {
            "occurred_at": now.isoformat(),
            "actor": claims["sub"],
            "action": "referral.created",
            "referral_id": referral.id,
        }
        digest = hashlib.sha256(
            (prev_hash + json.dumps(event, sort_keys=True)).encode()
        ).hexdigest()
        session.add(
            NaiveAuditEvent(
                occurred_at=now,
                actor=claims["sub"],
                action="referral.created",
                referral_id=referral.id,
                prev_hash=prev_hash,
                hash=digest,
            )
        )
        session.commit()
        session.refresh(referral)
        return referral

    return app
