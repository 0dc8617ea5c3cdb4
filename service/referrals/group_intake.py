"""Group commit for intake on PostgreSQL: concurrent intakes share one transaction.

Why (issue #15): one transaction per intake took seven round trips (BEGIN, the key, the possible
duplicates, the store, the audit event, the outbox, COMMIT) and a commit of its own; those
round trips were a third of the workers' CPU and most of PostgreSQL's. A batch of intakes takes
five whatever its size: BEGIN; one statement that reads (the keys' locks and lookups, the
possible duplicates, an audit head); one that writes (referrals, keys, first moves, audit events
and the head's move); the outbox; COMMIT.

How (the queue is service/core/group_commit.py's): each request does its own CPU work in its own
task (validation, the rules, the new referral) and joins the queue; a flush takes what is queued
(at most `max_batch`) and runs it as one unit of work, the audit events chained one after
another on the head it took. Each request is answered only after that commit: a 201 still means
the referral, its key and its audit event are durable together, and a crash before the commit
loses only requests never answered. There is no timer: while fewer than `flushes` batches are in
the database a request's flush starts at once, so a lone request waits for nothing; under load
requests queue while batches are in the database, and batches grow with the load.

What is not for a batch runs alone, as it always did (`intake.submit`, in a unit of work of
its own): a request whose key was seen before (a replay, a reuse, an expired key) after its
batch ends, as its key's lock is the batch's until then; a request whose key is already queued,
in a later batch; and every request of a batch that fails before COMMIT (a reference drawn twice,
a key that another instance committed since the lookup, a value the database refuses, anything
unexpected), so that a bad row fails alone. A batch that fails because the database cannot serve
(unreachable, out of connections, a COMMIT whose outcome is unknown) is not retried: one intake
at a time would wait as long again, or could store an unkeyed referral twice. Every request gets
the error (503), as a single intake would, and a retry with its Idempotency-Key replays what
committed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from eligibility import evaluate
from service.audit import chain
from service.core import events as domain_events
from service.core.canonical import canonical_json, sha256_hex
from service.core.database import database_unavailable
from service.core.group_commit import GroupCommit, answer, fail
from service.core.unit_of_work import UnitOfWork
from service.referrals import events, idempotency, intake, repository
from service.referrals.queries import DUPLICATE_STATUSES, PossibleDuplicate, duplicates_seen_by
from service.referrals.record import ReferralRecord
from service.referrals.submission import check_submission

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class _Intake:
    """One request waiting for its batch, with what it worked out in its own task."""

    request: intake.IntakeRequest
    referral: ReferralRecord
    answer: asyncio.Future[intake.Created]
    request_sha256: str = ""
    duplicates: list[PossibleDuplicate] = field(default_factory=list)

    @property
    def org(self) -> str:
        return self.request.ctx.caller.org

    @property
    def key(self) -> tuple[str, str] | None:
        key = self.request.idempotency_key
        return None if key is None else (self.org, key)


class IntakeBatches(GroupCommit[_Intake]):
    """Group commit of intakes for one process; built once with the process's unit of work."""

    def __init__(self, units: UnitOfWork, *, max_batch: int = 32, flushes: int = 2) -> None:
        super().__init__(units, max_batch=max_batch, flushes=flushes)

    async def submit(self, request: intake.IntakeRequest) -> intake.Created:
        """`intake.submit`, answered once the batch this request joined has committed."""
        check_submission(request.submission, request.ruleset, request.today)
        decision = evaluate(request.submission.facts, request.ruleset, request.today)
        item = _Intake(
            request=request,
            referral=intake.new_referral(request.ctx, request.submission, decision, request.now),
            answer=asyncio.get_running_loop().create_future(),
        )
        if request.idempotency_key is not None:
            item.request_sha256 = sha256_hex(canonical_json(request.submission.payload))
        created: intake.Created = await self._enqueue(item)
        return created

    def _take(self) -> list[_Intake]:
        """Up to `max_batch` queued intakes in arrival order, never two with the same key (a
        transaction takes its own advisory lock again): a repeat waits for a later batch."""
        batch: list[_Intake] = []
        keys: set[tuple[str, str]] = set()
        later: list[_Intake] = []
        while self._queue and len(batch) < self.max_batch:
            item = self._queue.popleft()
            key = item.key
            if key is not None and key in keys:
                later.append(item)
                continue
            if key is not None:
                keys.add(key)
            batch.append(item)
        self._queue.extendleft(reversed(later))
        return batch

    async def _run(self, batch: list[_Intake]) -> None:
        alone_after: list[_Intake] = []
        stored: list[_Intake] = []
        try:
            async with self.units.begin() as session:
                db = await session.connection()
                claimed = await repository.claim_many(
                    db, [_lookup(i) for i in batch], open_statuses=DUPLICATE_STATUSES
                )
                stored, alone_after = _sort(batch, claimed.intakes)
                if stored:
                    head = claimed.head or await chain.wait_for_head(db, len(batch))
                    await _store(db, stored, head)
                    made = [e for i in stored for e in events.created(i.referral, i.request.now)]
                    await domain_events.publish(session, made)
        except Exception as error:
            if database_unavailable(error):
                # Unreachable, out of connections, or the COMMIT's outcome unknown: not retried
                # (each intake alone would wait as long again, or could be stored twice).
                fail(batch, error)
                return
            if not isinstance(error, IntegrityError):
                # Not expected (IntegrityError is: a reference drawn twice, a key committed
                # meanwhile). Only the error's class is logged: its text may quote values.
                log.error("intake batch failed (%s); its intakes run alone", type(error).__name__)
            # Nothing committed: each intake runs alone and succeeds or fails on its own.
            await self._alone(batch)
            return
        for item in stored:
            answer(item, intake.Created(item.referral, False, item.duplicates))
        await self._alone(alone_after)

    async def _alone(self, batch: list[_Intake]) -> None:
        """Each intake as a single intake."""
        await self._each_alone(batch, lambda session, item: intake.submit(session, item.request))


def _lookup(item: _Intake) -> repository.IntakeLookup:
    key = item.key
    return repository.IntakeLookup(
        org=item.org,
        key=None if key is None else key[1],
        lock_id=None if key is None else idempotency.lock_id(*key),
        referral_id=item.referral.id,
        nhs_number=item.referral.match_nhs_number,
        name_key=item.referral.match_name_key,
        duplicates_of=duplicates_seen_by(item.request.ctx),
    )


def _sort(
    batch: list[_Intake], claims: list[repository.IntakeClaim]
) -> tuple[list[_Intake], list[_Intake]]:
    """(The intakes to store now, those to run alone after the batch.) An intake whose key is
    held elsewhere is answered 409 here and now."""
    now: list[_Intake] = []
    alone_after: list[_Intake] = []
    for item, claim in zip(batch, claims, strict=True):
        if not claim.locked:
            fail([item], idempotency.in_flight())
        elif claim.found is not None:
            alone_after.append(item)  # a replay, a reuse or an expired key: intake's own rules
        else:
            item.duplicates = [PossibleDuplicate.of(r) for r in claim.duplicates]
            now.append(item)
    return now, alone_after


async def _store(db: AsyncConnection, batch: list[_Intake], head: chain.HeadForMany) -> None:
    """The batch's referrals, keys, first moves and audit events (one chain, in batch order)."""
    keys: list[repository.KeyRow] = []
    for item in batch:
        if item.key is not None:
            org, key = item.key
            snapshot = intake.answer_snapshot(item.referral, item.duplicates)
            keys.append(
                repository.KeyRow(
                    org, key, item.request_sha256, item.referral.id, item.request.now, snapshot
                )
            )
    entries = [
        chain.Entry(
            ctx=i.request.ctx,
            action=intake.CREATED_ACTION,
            resource_type="referral",
            resource_id=i.referral.id,
            outcome="success",
            now=i.request.now,
            details=intake.created_audit_details(i.referral, i.duplicates),
        )
        for i in batch
    ]
    await repository.store_many(
        db, [i.referral for i in batch], keys, chain.chain_events(head, entries)
    )
