"""What the benchmark sends: realistic ~2 KB referral bodies and a pool of signed tokens.

Bodies start from service.referrals.examples.example_referral() (valid, dated relative to
today) and are padded the way real referrals are: a referrer's description of up to ~1,000
characters of plain text, two caregivers, several concern codes, risk factors and services.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from service.auth.devkeys import mint_token
from service.referrals.examples import example_referral

ISSUER = "https://idp.bench.nhs.example"
AUDIENCE = "referral-api"
SCOPES = ("referrals:submit", "referrals:read")
TARGET_BODY_BYTES = 2048

_GIVEN = ["Amira", "Ben", "Chloe", "Dev", "Ellie", "Femi", "Grace", "Hamza", "Isla", "Jonah"]
_FAMILY = ["Okafor", "Patel", "Nowak", "Hughes", "Rahman", "Evans", "Kowalski", "Murphy"]
_POSTCODES = ["OX4 1AA", "OX1 2JD", "SW1A 1AA", "M1 1AE", "B33 8TH", "CR2 6XH", "LS1 4AP"]
_ROLES = ["health_visitor", "gp", "midwife", "perinatal_mental_health"]
_CONCERNS = [
    "bonding_difficulties",
    "caregiver_finds_infant_hard_to_read",
    "negative_feelings_towards_infant",
    "infant_withdrawn_or_avoidant",
    "caregiver_mental_health_affecting_relationship",
]
_RISKS = ["domestic_abuse", "social_isolation", "traumatic_birth", "insecure_housing"]
_SERVICES = ["health_visiting", "gp", "perinatal_mental_health", "early_help"]
ORGS = ["RX1", "A81001", "RTH", "RYJ", "B82005", "RQM", "RRK", "R1H"]
# Plain text in the register of a referral letter; cut to length per body.
_DESCRIPTION = (
    "Mother reports finding it very hard to feel close to the baby since a difficult birth "
    "with an emergency caesarean and a stay on the neonatal unit. She describes the baby as "
    "hard to settle and says she often does not know what the baby needs; she worries the baby "
    "does not like her. At the last two contacts the baby was observed to avoid eye contact "
    "and to quieten only when held by the father. Mother has a history of anxiety and low mood "
    "and is on the waiting list for the perinatal mental health team. Father works long shifts "
    "and the family moved to the area four months ago, so they have little support nearby. "
    "There are no current child protection concerns. Both parents have agreed to the referral "
    "and would prefer home visits in the mornings. An interpreter is not needed. Health "
    "visiting will continue to offer fortnightly contacts while the referral is considered, "
    "and the GP is aware. Please contact the named health visitor for further information. "
    "Mother has said she would find a group setting difficult at present but would value "
    "individual work, and asked that letters are sent to the home address."
)


def nhs_number(rng: random.Random) -> str:
    """A random ten-digit number that passes the Modulus 11 check."""
    while True:
        digits = [rng.randrange(10) for _ in range(9)]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if check == 11:
            check = 0
        if check != 10:
            return "".join(map(str, digits)) + str(check)


def referral_body(seed: int, today: date | None = None) -> dict[str, Any]:
    """One valid, realistic referral of about 2 KB; `seed` varies names, numbers and codes."""
    rng = random.Random(seed)
    today = today or date.today()
    given, family = rng.choice(_GIVEN), rng.choice(_FAMILY)
    body = example_referral(date.today())
    body["referrer"] = {
        "name": f"{rng.choice(_GIVEN)} {rng.choice(_FAMILY)}",
        "role": rng.choice(_ROLES),
        "email": f"hv.team{seed % 97}@nhs.example",
        "phone": f"01865 {rng.randrange(100000, 999999)}",
    }
    body["infant"] = {
        "given_name": given,
        "family_name": family,
        "nhs_number": nhs_number(rng),
        "date_of_birth": (today - timedelta(days=rng.randrange(14, 600))).isoformat(),
    }
    body["caregivers"] = [
        {
            "given_name": rng.choice(_GIVEN),
            "family_name": family,
            "relationship": "mother",
            "phone": f"07700 {rng.randrange(900000, 999999)}",
            "nhs_number": nhs_number(rng),
        },
        {
            "given_name": rng.choice(_GIVEN),
            "family_name": family,
            "relationship": "father",
            "phone": f"07700 {rng.randrange(900000, 999999)}",
            "nhs_number": None,
        },
    ]
    body["postcode"] = rng.choice(_POSTCODES)
    body["concerns"] = {
        "codes": rng.sample(_CONCERNS, k=rng.randrange(1, 4)),
        "description": "",
        "duration_weeks": rng.randrange(2, 20),
    }
    body["risk_factors"] = rng.sample(_RISKS, k=rng.randrange(0, 3))
    body["services_involved"] = rng.sample(_SERVICES, k=rng.randrange(1, 4))
    body["consent"] = {
        "caregiver_consent": True,
        "recorded_on": (today - timedelta(days=rng.randrange(1, 8))).isoformat(),
    }
    # Pad the description (about 1,000 characters) so the whole body is about 2 KB.
    room = TARGET_BODY_BYTES - len(encode(body))
    body["concerns"]["description"] = _DESCRIPTION[: max(0, min(1100, room))].rstrip()
    return body


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


# Distinct infants the requests rotate through. Real referrals rarely name an infant with an open
# referral already; with the 16 bodies of issue 7, every intake found 20 "possible duplicates"
# and carried them in its response and its replay snapshot, which cost about a sixth of
# intake's CPU and no partner's traffic looks like that. `python -m bench --bodies 16` gives the
# old mix back for comparison.
DEFAULT_BODIES = 4096


def bodies(count: int = DEFAULT_BODIES, today: date | None = None) -> list[bytes]:
    return [encode(referral_body(seed, today)) for seed in range(count)]


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes
    public_file: Path


def make_keypair(directory: Path) -> KeyPair:
    """An RSA-2048 pair for this run: the servers trust the public half, tokens are signed
    with the private half, which never leaves the benchmark process's temp directory."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_file = directory / "jwt-public.pem"
    public_file.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return KeyPair(private_pem, public_file)


def tokens(keys: KeyPair, count: int = 31, ttl_seconds: int = 2 * 3600) -> list[str]:
    """A pool of distinct tokens (several organisations and clients) valid for the whole run."""
    now = datetime.now(UTC)
    return [
        mint_token(
            private_key_pem=keys.private_pem,
            issuer=ISSUER,
            audience=AUDIENCE,
            sub=f"bench-client-{i}",
            org=ORGS[i % len(ORGS)],
            scopes=SCOPES,
            ttl_seconds=ttl_seconds,
            now=now,
        )
        for i in range(count)
    ]
