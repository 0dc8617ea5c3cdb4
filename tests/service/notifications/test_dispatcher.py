"""The dispatcher against a real receiver on 127.0.0.1: retries, order, 410, redirects, leases.

Time is the dispatcher's injected clock, moved by the test: the real retry schedule is checked
without waiting for it."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from standardwebhooks.webhooks import WebhookVerificationError

from service.notifications import subscriptions
from service.notifications.dispatcher import RETRY_SCHEDULE
from service.notifications.safety import UrlPolicy
from tests.service.notifications.conftest import TEAM, Hooks
from tests.webhooks import always, receiver


async def test_a_failed_attempt_is_retried_on_the_schedule_until_it_succeeds(
    hooks: Hooks,
) -> None:
    with receiver(lambda n: (500, 0.0, {}) if n < 2 else (204, 0.0, {})) as hook:
        made = await hooks.subscribe(hook.url)
        await hooks.publish("r-1")
        dispatcher = hooks.dispatcher()
        assert await dispatcher.run_once() == 1
        [row] = await hooks.deliveries()
        assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 500)
        assert row.last_error == "http_status"
        # Not again before the schedule's first step (5 s) ...
        hooks.clock.advance(RETRY_SCHEDULE[0] - 1)
        assert await dispatcher.run_once() == 0
        hooks.clock.advance(1)
        assert await dispatcher.run_once() == 1
        # ... then 5 minutes.
        hooks.clock.advance(RETRY_SCHEDULE[1] - 1)
        assert await dispatcher.run_once() == 0
        hooks.clock.advance(1)
        assert await dispatcher.run_once() == 1
        [row] = await hooks.deliveries()
        assert (row.status, row.attempts, row.last_status_code) == ("succeeded", 3, 204)
        received = hook.snapshot()
        assert len({r.headers["webhook-id"] for r in received}) == 1
        assert all(r.verify(made.secret)["data"]["id"] == "r-1" for r in received)


async def test_after_the_last_retry_the_delivery_is_failed(hooks: Hooks) -> None:
    with receiver(always(500)) as hook:
        await hooks.subscribe(hook.url)
        await hooks.publish("r-1")
        dispatcher = hooks.dispatcher(schedule=(1.0, 2.0))
        for step in (0.0, 1.0, 2.0):
            hooks.clock.advance(step)
            assert await dispatcher.run_once() == 1
        hooks.clock.advance(3600)
        assert await dispatcher.run_once() == 0
        [row] = await hooks.deliveries()
        assert (row.status, row.attempts) == ("failed", 3)
        assert len(hook.snapshot()) == 3


async def test_a_timeout_and_a_refused_connection_are_failures_to_retry(hooks: Hooks) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused_url = f"http://127.0.0.1:{closed.getsockname()[1]}/hook"
    with receiver(lambda n: (204, 2.0 if n == 0 else 0.0, {})) as slow:
        await hooks.subscribe(slow.url)
        await hooks.subscribe(refused_url)
        await hooks.publish("r-1")
        dispatcher = hooks.dispatcher(timeout=0.5, schedule=(1.0,))
        assert await dispatcher.run_once() == 2
        errors = {row.subscription_id: row.last_error for row in await hooks.deliveries()}
        assert sorted(errors.values()) == ["connection_error", "timeout"]
        hooks.clock.advance(1)
        assert await dispatcher.run_once() == 2
        statuses = sorted(row.status for row in await hooks.deliveries())
        assert statuses == ["failed", "succeeded"]


async def test_retry_after_is_honoured(hooks: Hooks) -> None:
    with receiver(lambda n: (503, 0.0, {"Retry-After": "120"}) if n == 0 else (204, 0.0, {})) as h:
        await hooks.subscribe(h.url)
        await hooks.publish("r-1")
        dispatcher = hooks.dispatcher()
        await dispatcher.run_once()
        [row] = await hooks.deliveries()
        waited = row.next_attempt_at.replace(tzinfo=None) - row.last_attempt_at.replace(tzinfo=None)
        assert waited == timedelta(seconds=120)  # not the schedule's 5 s
        hooks.clock.advance(60)
        assert await dispatcher.run_once() == 0
        hooks.clock.advance(60)
        assert await dispatcher.run_once() == 1


async def test_410_disables_the_subscription_and_gives_up_its_waiting_deliveries(
    hooks: Hooks,
) -> None:
    with receiver(always(410)) as hook:
        made = await hooks.subscribe(hook.url)
        await hooks.publish("r-1")
        await hooks.publish("r-2")
        dispatcher = hooks.dispatcher(batch_size=1)
        assert await dispatcher.run_once() == 1
        subscription = await hooks.subscription(made.subscription.id)
        assert subscription.disabled_at is not None
        assert subscription.disabled_reason == "gone"
        rows = await hooks.deliveries()
        assert [(r.status, r.last_error) for r in rows] == [
            ("failed", "http_status"),
            ("failed", "subscription_disabled"),
        ]
        await hooks.publish("r-3")  # a disabled subscription is sent nothing new ...
        assert await dispatcher.run_once() == 0
        assert len(hook.snapshot()) == 1


async def test_what_a_disabled_subscription_misses_is_kept_visible_and_counted(
    hooks: Hooks,
) -> None:
    """A safeguarding alert raised while the team's endpoint is disabled (410) is not silently
    dropped: it is in the deliveries as failed, counted, and a retry sends it."""
    from prometheus_client import REGISTRY

    from service.core import events

    with receiver(lambda n: (410, 0.0, {}) if n == 0 else (204, 0.0, {})) as hook:
        made = await hooks.subscribe(hook.url, ("referral.safeguarding_alert",))
        alert = events.ReferralEvent(
            events.REFERRAL_SAFEGUARDING_ALERT, "r-1", "RX1", False, True, hooks.clock(), {}
        )
        async with hooks.units.begin() as session:
            await events.publish(session, [alert])
        dispatcher = hooks.dispatcher()
        assert await dispatcher.run_once() == 1  # 410: disabled
        async with hooks.units.begin() as session:
            await events.publish(session, [replace(alert, referral_id="r-2")])
        rows = await hooks.deliveries()
        assert [(r.referral_id, r.status, r.last_error) for r in rows] == [
            ("r-1", "failed", "http_status"),
            ("r-2", "failed", "subscription_disabled"),
        ]
        assert rows[1].finished_at is not None  # forgotten after the retention, not kept forever
        await dispatcher.observe_backlog()
        labels = {"type": "referral.safeguarding_alert"}
        assert REGISTRY.get_sample_value("referral_webhook_failed_deliveries", labels) == 2
        async with hooks.units.begin() as session:
            await subscriptions.retry(
                session=session,
                ctx=TEAM,
                subscription_id=made.subscription.id,
                delivery_id=rows[1].id,
                now=hooks.clock(),
            )
        assert await dispatcher.run_once() == 1
        sent = [r.verify(made.secret)["type"] for r in hook.snapshot()]
        assert sent == ["referral.safeguarding_alert"] * 2


async def test_a_redirect_is_a_failure_and_is_not_followed(hooks: Hooks) -> None:
    with receiver(lambda _n: (302, 0.0, {"Location": "/elsewhere"})) as hook:
        await hooks.subscribe(hook.url)
        await hooks.publish("r-1")
        await hooks.dispatcher().run_once()
        [row] = await hooks.deliveries()
        assert (row.status, row.last_status_code, row.last_error) == ("pending", 302, "redirect")
        assert [r.path for r in hook.snapshot()] == ["/hook"]


async def test_a_later_event_of_a_referral_waits_for_an_earlier_one_under_retries(
    hooks: Hooks,
) -> None:
    with receiver(lambda n: (500, 0.0, {}) if n == 0 else (204, 0.0, {})) as hook:
        await hooks.subscribe(hook.url)
        await hooks.publish("r-1", version=2)
        await hooks.publish("r-1", version=3)
        dispatcher = hooks.dispatcher()
        assert await dispatcher.run_once() == 1  # only version 2: version 3 waits behind it
        await hooks.publish("r-2", version=2)  # another referral does not wait
        assert await dispatcher.run_once() == 1
        hooks.clock.advance(RETRY_SCHEDULE[0])
        assert await dispatcher.run_once() == 1
        assert await dispatcher.run_once() == 1
        sent = [(r.json()["data"]["id"], r.json()["data"]["version"]) for r in hook.snapshot()]
        assert sent == [("r-1", 2), ("r-2", 2), ("r-1", 2), ("r-1", 3)]


async def test_an_event_failed_for_good_no_longer_holds_later_ones_back(hooks: Hooks) -> None:
    with receiver(lambda n: (500, 0.0, {}) if n == 0 else (204, 0.0, {})) as hook:
        await hooks.subscribe(hook.url)
        await hooks.publish("r-1", version=2)
        await hooks.publish("r-1", version=3)
        dispatcher = hooks.dispatcher(schedule=())
        assert await dispatcher.run_once() == 1
        assert await dispatcher.run_once() == 1
        assert [r.status for r in await hooks.deliveries()] == ["failed", "succeeded"]


async def test_safeguarding_alerts_are_sent_before_anything_else_waiting(hooks: Hooks) -> None:
    from service.core import events

    with receiver() as hook:
        await hooks.subscribe(hook.url, ("referral.status_changed", "referral.safeguarding_alert"))
        for n in range(3):
            await hooks.publish(f"r-{n}")
        alert = events.ReferralEvent(
            events.REFERRAL_SAFEGUARDING_ALERT, "r-9", "RX1", False, True, hooks.clock(), {}
        )
        async with hooks.units.begin() as session:
            await events.publish(session, [alert])
        await hooks.dispatcher(batch_size=1).run_once()
        [first] = hook.snapshot()
        assert first.json()["type"] == "referral.safeguarding_alert"


async def test_a_dispatcher_killed_mid_delivery_leaves_it_to_another(hooks: Hooks) -> None:
    with receiver(lambda n: (204, 3.0 if n == 0 else 0.0, {})) as hook:
        await hooks.subscribe(hook.url)
        await hooks.publish("r-1")
        doomed = hooks.dispatcher(lease=timedelta(seconds=30))
        task = asyncio.create_task(doomed.run_once())
        await hook.wait_for(1)
        task.cancel()  # dies mid-delivery: the row stays claimed until its lease runs out
        await asyncio.gather(task, return_exceptions=True)
        [row] = await hooks.deliveries()
        assert row.status == "delivering"
        other = hooks.dispatcher()
        assert await other.run_once() == 0  # the lease still holds
        hooks.clock.advance(31)
        assert await other.run_once() == 1
        [row] = await hooks.deliveries()
        assert row.status == "succeeded"
        first, second = hook.snapshot()
        assert first.headers["webhook-id"] == second.headers["webhook-id"]


async def test_an_address_that_has_turned_inwards_is_refused_at_delivery(hooks: Hooks) -> None:
    with receiver() as hook:
        await hooks.subscribe("https://hooks.partner.example/x")

        async def inwards(_host: str, _port: int) -> list[str]:
            return ["10.0.0.7"]

        dispatcher = hooks.dispatcher(policy=UrlPolicy(allow_insecure=False, resolver=inwards))
        await hooks.publish("r-1")
        await dispatcher.run_once()
        [row] = await hooks.deliveries()
        assert (row.status, row.last_error) == ("pending", "address_refused")
        assert hook.snapshot() == []


async def test_the_connection_goes_to_the_address_that_was_checked(hooks: Hooks) -> None:
    with receiver() as hook:
        # The name exists nowhere: only the stub resolver knows it means 127.0.0.1.
        made = await hooks.subscribe(f"http://receiver.invalid:{hook.port}/hook")
        await hooks.publish("r-1")
        await hooks.dispatcher().run_once()
        [message] = hook.snapshot()
        assert message.headers["host"] == f"receiver.invalid:{hook.port}"
        assert message.verify(made.secret)["data"]["id"] == "r-1"


async def test_metrics_count_attempts_by_result_and_show_the_backlog(hooks: Hooks) -> None:
    from prometheus_client import REGISTRY

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    with receiver(always(500)) as hook:
        await hooks.subscribe(hook.url)
        await hooks.publish("r-1")
        before = sample("referral_webhook_attempts_total", result="http_status")
        dispatcher = hooks.dispatcher()
        hooks.clock.advance(90)
        await dispatcher.observe_backlog()
        assert sample("referral_webhook_outbox_depth") == 1
        assert sample("referral_webhook_oldest_pending_seconds") >= 90
        await dispatcher.run_once()
        assert sample("referral_webhook_attempts_total", result="http_status") == before + 1
        # Labels are the result class or event type only: never an organisation, a URL or an id.
        families = [m for m in REGISTRY.collect() if m.name.startswith("referral_webhook")]
        labels = {key for m in families for s in m.samples for key in s.labels}
        assert labels <= {"result", "type"}


async def test_each_attempt_is_logged_without_the_body(
    hooks: Hooks, caplog: pytest.LogCaptureFixture
) -> None:
    with receiver(always(201)) as hook:
        made = await hooks.subscribe(hook.url)
        await hooks.publish("r-1", reference="REF-DISTINCT")
        with caplog.at_level(logging.INFO, logger="service.notifications"):
            await hooks.dispatcher().run_once()
        [record] = [r for r in caplog.records if r.getMessage() == "webhook attempt"]
        [message] = hook.snapshot()
        assert record.event_id == message.headers["webhook-id"]  # type: ignore[attr-defined]
        assert record.subscription_id == made.subscription.id  # type: ignore[attr-defined]
        assert record.status_code == 201  # type: ignore[attr-defined]
        assert record.duration_ms >= 0  # type: ignore[attr-defined]
        assert "REF-DISTINCT" not in str(record.__dict__)


async def test_finished_deliveries_are_forgotten_after_the_retention(hooks: Hooks) -> None:
    with receiver(lambda n: (204, 0.0, {}) if n == 0 else (500, 0.0, {})) as hook:
        await hooks.subscribe(hook.url)
        await hooks.publish("r-1")
        await hooks.publish("r-2")
        dispatcher = hooks.dispatcher(retention=timedelta(days=30), batch_size=1)
        await dispatcher.run_once()  # r-1 succeeds
        await dispatcher.run_once()  # r-2 fails once: still pending
        hooks.clock.advance(29 * 86400)
        assert await dispatcher.purge() == 0
        hooks.clock.advance(2 * 86400)
        assert await dispatcher.purge() == 1
        [left] = await hooks.deliveries()
        assert (left.referral_id, left.status) == ("r-2", "pending")


async def test_a_dispatcher_that_is_stopped_hands_back_what_it_holds(hooks: Hooks) -> None:
    with receiver(lambda n: (204, 3.0 if n == 0 else 0.0, {})) as hook:
        await hooks.subscribe(hook.url)
        await hooks.publish("r-1")
        stopping = hooks.dispatcher(poll_seconds=0.05)
        task = asyncio.create_task(stopping.run())
        await hook.wait_for(1)
        # SIGTERM or the app's shutdown: the attempt in flight (the receiver answers in 3 s)
        # is cut short, and run() returns by itself: it is not cancelled mid-database-call.
        stopping.stop()
        await asyncio.wait_for(asyncio.shield(task), timeout=2.5)
        assert task.result() is None
        [row] = await hooks.deliveries()
        assert (row.status, row.attempts, row.lease_owner) == ("pending", 0, None)
        assert await hooks.dispatcher().run_once() == 1  # at once, no lease to wait for
        [row] = await hooks.deliveries()
        assert row.status == "succeeded"


async def test_an_attempt_that_raises_is_a_failure_on_the_schedule(
    hooks: Hooks, caplog: pytest.LogCaptureFixture
) -> None:
    """Not a delivery claimed again at each lease's end for ever, holding back the later
    events of its referral: it is retried on the schedule and then `failed`, as any other."""

    async def broken(_host: str, _port: int) -> list[str]:
        raise RuntimeError("a bug quoting https://hooks.partner.example/x?token=s3cr3t")

    await hooks.subscribe("https://hooks.partner.example/x")
    await hooks.publish("r-1", version=2)
    await hooks.publish("r-1", version=3)
    dispatcher = hooks.dispatcher(
        policy=UrlPolicy(allow_insecure=False, resolver=broken), schedule=(1.0,)
    )
    assert await dispatcher.run_once() == 1
    first, _later = await hooks.deliveries()
    assert (first.status, first.attempts, first.last_error) == ("pending", 1, "internal_error")
    hooks.clock.advance(1)
    assert await dispatcher.run_once() == 1
    assert await dispatcher.run_once() == 1  # version 3 is no longer held back
    assert [(r.status, r.attempts) for r in await hooks.deliveries()] == [
        ("failed", 2),
        ("pending", 1),
    ]
    raised = [r for r in caplog.records if r.getMessage() == "webhook attempt raised"]
    assert raised and raised[0].error == "RuntimeError"  # type: ignore[attr-defined]
    assert "s3cr3t" not in caplog.text


async def test_a_database_error_does_not_stop_the_dispatcher(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from service.notifications import repository

    real_claim = repository.claim
    failures = []

    async def claim_once_failing(*args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(1)
            raise OperationalError("SELECT", {}, Exception("the database is restarting"))
        return await real_claim(*args, **kwargs)

    monkeypatch.setattr(repository, "claim", claim_once_failing)
    with receiver() as hook:
        await hooks.subscribe(hook.url)
        await hooks.publish("r-1")
        task = asyncio.create_task(hooks.dispatcher(poll_seconds=0.05).run())
        try:
            await hook.wait_for(1)
            assert failures == [1] and not task.done()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_the_previous_secret_signs_for_24_hours_and_no_longer(hooks: Hooks) -> None:
    with receiver() as hook:
        made = await hooks.subscribe(hook.url)
        async with hooks.units.begin() as session:
            rotated = await subscriptions.rotate_secret(
                session=session,
                ctx=TEAM,
                subscription_id=made.subscription.id,
                box=hooks.box,
                now=hooks.clock(),
            )
        dispatcher = hooks.dispatcher()
        hooks.clock.advance(24 * 3600 - 1)
        await hooks.publish("r-1")
        await dispatcher.run_once()
        hooks.clock.advance(1)
        await hooks.publish("r-2")
        await dispatcher.run_once()
        within, after = hook.snapshot()
        assert within.verify(made.secret) and within.verify(rotated.secret)
        assert len(after.headers["webhook-signature"].split(" ")) == 1
        assert after.verify(rotated.secret)["data"]["id"] == "r-2"
        with pytest.raises(WebhookVerificationError):
            after.verify(made.secret)


async def test_a_retry_due_after_a_410_in_the_same_batch_is_given_up_too(hooks: Hooks) -> None:
    """Two deliveries in flight to one subscription: the first answers 410 and disables it; the
    second fails later with a 500. It must not be left pending for a subscription that is no
    longer claimed (never sent, never failed, counted as waiting for ever)."""
    with receiver(lambda n: (410, 0.0, {}) if n == 0 else (500, 0.5, {})) as hook:
        await hooks.subscribe(hook.url)
        await hooks.publish("r-1")
        await hooks.publish("r-2")
        assert await hooks.dispatcher().run_once() == 2
        rows = await hooks.deliveries()
        assert sorted((r.status, r.last_status_code) for r in rows) == [
            ("failed", 410),
            ("failed", 500),
        ]
        assert len(hook.snapshot()) == 2
