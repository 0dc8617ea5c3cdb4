"""Listing referrals: filters, page size, and keyset cursors that neither repeat nor skip."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from tests.factories import make_referral_body

TEAM = {"org": "PIT01", "scopes": ("referrals:triage",)}
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
# Dates well clear of the pinned times, so every body stays valid whatever the hour.
SAFE_DATES = {
    "consent__recorded_on": (BASE - timedelta(days=3)).date().isoformat(),
    "infant__date_of_birth": (BASE - timedelta(days=120)).date().isoformat(),
}
OUTCOME_BODIES = {
    # domestic abuse (2) + 6 weeks (1) = 3: step up
    "step_up": {},
    # 6 weeks (1) only: below 3, step down
    "step_down": {"risk_factors": []},
    # no relationship concern: signpost
    "signpost": {"concerns__codes": ["feeding_only"]},
}


async def submit_at(
    client: httpx.AsyncClient, auth, pin_clock, moment: datetime, **overrides: Any
) -> dict[str, Any]:
    pin_clock(moment)
    body = make_referral_body(**{**SAFE_DATES, **overrides})
    response = await client.post("/v1/referrals", json=body, headers=auth())
    assert response.status_code == 201, response.text
    return response.json()


async def list_ids(client: httpx.AsyncClient, auth, **params: Any) -> list[str]:
    response = await client.get("/v1/referrals", params=params, headers=auth(**TEAM))
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["next_cursor"] is None  # small enough for one page
    return [item["id"] for item in page["items"]]


async def page_through(
    client: httpx.AsyncClient, auth, limit: int, between_pages: Any = None
) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/v1/referrals", params=params, headers=auth(**TEAM))
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        pages.append([item["id"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "paging does not end"
        if between_pages is not None and len(pages) == 1:
            await between_pages()


async def test_newest_first(client: httpx.AsyncClient, auth, pin_clock) -> None:
    made = [
        await submit_at(client, auth, pin_clock, BASE + timedelta(minutes=m)) for m in (1, 3, 2)
    ]
    assert await list_ids(client, auth) == [made[1]["id"], made[2]["id"], made[0]["id"]]


async def test_filter_by_outcome(client: httpx.AsyncClient, auth, pin_clock) -> None:
    made = {}
    for minute, (outcome, overrides) in enumerate(OUTCOME_BODIES.items()):
        referral = await submit_at(
            client, auth, pin_clock, BASE + timedelta(minutes=minute), **overrides
        )
        assert referral["decision"]["outcome"] == outcome
        made[outcome] = referral["id"]
    for outcome, referral_id in made.items():
        assert await list_ids(client, auth, outcome=outcome) == [referral_id]


async def test_filter_by_status(client: httpx.AsyncClient, auth, pin_clock) -> None:
    first = await submit_at(client, auth, pin_clock, BASE)
    second = await submit_at(client, auth, pin_clock, BASE + timedelta(minutes=1))
    # Every new referral awaits triage; nothing has been triaged yet.
    assert await list_ids(client, auth, status="awaiting_triage") == [second["id"], first["id"]]
    for other in ("accepted", "stepped_down", "signposted", "withdrawn", "closed"):
        assert await list_ids(client, auth, status=other) == []


async def test_filter_by_received_window(client: httpx.AsyncClient, auth, pin_clock) -> None:
    times = [BASE + timedelta(hours=h) for h in range(4)]
    made = [(await submit_at(client, auth, pin_clock, t))["id"] for t in times]

    def iso(moment: datetime) -> str:
        return moment.isoformat()

    # received_from is inclusive, received_to exclusive.
    assert await list_ids(client, auth, received_from=iso(times[2])) == [made[3], made[2]]
    assert await list_ids(client, auth, received_to=iso(times[1])) == [made[0]]
    assert await list_ids(client, auth, received_from=iso(times[1]), received_to=iso(times[3])) == [
        made[2],
        made[1],
    ]
    # The same instant in another offset is the same instant.
    in_new_york = times[2].astimezone(timezone(timedelta(hours=-5))).isoformat()
    assert in_new_york.endswith("-05:00")
    assert await list_ids(client, auth, received_from=in_new_york) == [made[3], made[2]]
    assert await list_ids(client, auth, received_from=iso(times[3] + timedelta(seconds=1))) == []


async def test_filters_combine(client: httpx.AsyncClient, auth, pin_clock) -> None:
    early_up = await submit_at(client, auth, pin_clock, BASE)
    late_up = await submit_at(client, auth, pin_clock, BASE + timedelta(hours=2))
    await submit_at(client, auth, pin_clock, BASE + timedelta(hours=2), risk_factors=[])
    middle = (BASE + timedelta(hours=1)).isoformat()
    assert await list_ids(client, auth, outcome="step_up", received_from=middle) == [late_up["id"]]
    assert await list_ids(client, auth, outcome="step_up", received_to=middle) == [early_up["id"]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"limit": 101}, "limit", id="limit-101"),
        pytest.param({"limit": 0}, "limit", id="limit-0"),
        pytest.param({"limit": -1}, "limit", id="limit-negative"),
        pytest.param({"limit": "ten"}, "limit", id="limit-not-a-number"),
        pytest.param({"status": "pending"}, "status", id="unknown-status"),
        pytest.param({"outcome": "maybe"}, "outcome", id="unknown-outcome"),
        pytest.param({"received_from": "last tuesday"}, "received_from", id="bad-from"),
        pytest.param({"received_to": "2026-13-01T00:00:00Z"}, "received_to", id="bad-to"),
        pytest.param({"cursor": "garbage"}, "cursor", id="cursor-garbage"),
        pytest.param({"cursor": "!!!"}, "cursor", id="cursor-bad-characters"),
        pytest.param({"cursor": "A" * 201}, "cursor", id="cursor-too-long"),
        pytest.param(
            {"cursor": base64.urlsafe_b64encode(b'{"a": 1}').decode().rstrip("=")},
            "cursor",
            id="cursor-json-object",
        ),
        pytest.param(
            {
                "cursor": base64.urlsafe_b64encode(
                    json.dumps(["2026-01-01T00:00:00+00:00", "not-a-uuid"]).encode()
                )
                .decode()
                .rstrip("=")
            },
            "cursor",
            id="cursor-bad-id",
        ),
        pytest.param(
            {"cursor": base64.urlsafe_b64encode(b"null").decode().rstrip("=")},
            "cursor",
            id="cursor-null",
        ),
    ],
)
async def test_bad_list_parameters_are_422(
    client: httpx.AsyncClient, auth, problem, params: dict[str, Any], field: str
) -> None:
    response = await client.get("/v1/referrals", params=params, headers=auth())
    problem(response, 422, fields=(field,))


async def test_limit_of_100_is_allowed(client: httpx.AsyncClient, auth) -> None:
    response = await client.get("/v1/referrals", params={"limit": 100}, headers=auth())
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


async def test_paging_returns_every_referral_exactly_once(
    client: httpx.AsyncClient, auth, pin_clock
) -> None:
    made = [
        (await submit_at(client, auth, pin_clock, BASE + timedelta(minutes=m)))["id"]
        for m in range(7)
    ]
    pages = await page_through(client, auth, limit=3)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for page in pages for i in page] == made[::-1]


async def test_paging_when_the_last_page_is_full(
    client: httpx.AsyncClient, auth, pin_clock
) -> None:
    made = [
        (await submit_at(client, auth, pin_clock, BASE + timedelta(minutes=m)))["id"]
        for m in range(4)
    ]
    pages = await page_through(client, auth, limit=2)
    # The second page is the last: its next_cursor is null, not a link to an empty page.
    assert pages == [made[:1:-1], made[1::-1]]


async def test_paging_through_referrals_received_at_the_same_instant(
    client: httpx.AsyncClient, auth, pin_clock
) -> None:
    # Ties on received_at are broken by id: still every item exactly once.
    made = [(await submit_at(client, auth, pin_clock, BASE))["id"] for _ in range(5)]
    pages = await page_through(client, auth, limit=2)
    flat = [i for page in pages for i in page]
    assert sorted(flat) == sorted(made)
    assert len(flat) == len(set(flat)) == 5


async def test_cursor_holds_while_new_referrals_arrive(
    client: httpx.AsyncClient, auth, pin_clock
) -> None:
    old = [
        (await submit_at(client, auth, pin_clock, BASE + timedelta(minutes=m)))["id"]
        for m in range(6)
    ]
    new: list[str] = []

    async def more_arrive() -> None:
        for m in range(10, 13):
            referral = await submit_at(client, auth, pin_clock, BASE + timedelta(minutes=m))
            new.append(referral["id"])

    pages = await page_through(client, auth, limit=2, between_pages=more_arrive)
    flat = [i for page in pages for i in page]
    assert len(new) == 3
    # Page 1 was read before they arrived; the rest continue below the cursor.
    assert flat == old[::-1]
    assert not set(new) & set(flat)
    # A fresh listing shows them first.
    fresh = await client.get("/v1/referrals", params={"limit": 3}, headers=auth(**TEAM))
    assert [item["id"] for item in fresh.json()["items"]] == new[::-1]


async def test_cursor_respects_the_filters(client: httpx.AsyncClient, auth, pin_clock) -> None:
    step_up = []
    for minute in range(5):
        overrides = OUTCOME_BODIES["step_up" if minute % 2 == 0 else "step_down"]
        referral = await submit_at(
            client, auth, pin_clock, BASE + timedelta(minutes=minute), **overrides
        )
        if minute % 2 == 0:
            step_up.append(referral["id"])
    first = await client.get(
        "/v1/referrals", params={"limit": 2, "outcome": "step_up"}, headers=auth(**TEAM)
    )
    page = first.json()
    assert [item["id"] for item in page["items"]] == step_up[:0:-1]
    second = await client.get(
        "/v1/referrals",
        params={"limit": 2, "outcome": "step_up", "cursor": page["next_cursor"]},
        headers=auth(**TEAM),
    )
    assert second.json() == {"items": [second.json()["items"][0]], "next_cursor": None}
    assert second.json()["items"][0]["id"] == step_up[0]


@pytest.mark.parametrize(
    "cursor",
    [
        # Well-formed base64 JSON that this service never issued.
        "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgNV0",  # ["2026-01-01T00:00:00+00:00", 5]
        "WyI5OTk5LTEyLTMxVDIzOjU5OjU5LTIzOjU5IiwgIjNmYTg1ZjY0LTU3MTctNDU2Mi1iM2ZjLTJjOTYzZjY2YWZhNiJd",
    ],
    ids=["id-not-a-string", "time-out-of-range"],
)
async def test_a_forged_cursor_is_422_not_500(
    client: httpx.AsyncClient, auth, problem, cursor: str
) -> None:
    response = await client.get("/v1/referrals", params={"cursor": cursor}, headers=auth())
    problem(response, 422, fields=("cursor",))


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
async def test_date_time_filters_out_of_range_are_422(
    client: httpx.AsyncClient, auth, problem, moment: str
) -> None:
    response = await client.get("/v1/referrals", params={"received_from": moment}, headers=auth())
    problem(response, 422, fields=("received_from",))
