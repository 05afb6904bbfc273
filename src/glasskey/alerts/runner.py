"""The alerts' background work, off the request path: a periodic sweep that evaluates and delivers.

Nothing on the request path evaluates alerts: a request only writes its receipt and settlement,
as before. Every ``tick_seconds`` (1 s) the runner sends the webhook deliveries that are due, and
every ``evaluate_every_seconds`` (15 s) it evaluates the rules of each org that has a webhook
(``alerts.firing.evaluate``): the round is shared by every gateway process through a lease
(``alerts.lease``), so with ``--workers N`` or several hosts an org is still evaluated once per
period, by whichever process takes the round. An alert is therefore sent at most about 15 s after its threshold
is crossed, plus the receiver's time. The database work runs in a worker thread; the HTTP posts
run concurrently on the event loop, at most ``due_per_round_max`` per round.

A delivery is a POST of the event's JSON, signed (``alerts.signing``), with no redirects followed,
no cookies, no proxy from the environment, a total timeout of ``timeout_seconds``, and at most
``EXCERPT_CHARS_MAX`` characters of the answer read. Its URL is judged again by the upstream
address policy before each attempt, and its host resolved through the guarded resolver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import anyio
import anyio.to_thread

from glasskey.alerts.delivery import (
    EXCERPT_CHARS_MAX,
    Claimed,
    DeliveryLimits,
    Outcome,
    claim,
    claim_due,
    due_ids,
    get_delivery,
    record,
)
from glasskey.alerts.firing import changed, evaluate, queue_test_event
from glasskey.alerts.lease import give_back, is_due, take
from glasskey.alerts.signing import signed_headers
from glasskey.alerts.webhooks import check_webhook_url, get_webhook, webhook_orgs
from glasskey.errors import ClientError
from glasskey.ids import new_id
from glasskey.routing.credentials import CredentialVault
from glasskey.routing.guarded_resolver import ResolvedOnlyToRefused, UpstreamAddressResolver
from glasskey.routing.upstream_address import UpstreamAddressRefused
from glasskey.store.database import Database

log = logging.getLogger("glasskey.alerts")


async def post_signed(claimed: Claimed, *, allow_private: bool, timeout_seconds: float, now_seconds: float) -> Outcome:
    """One attempt of one delivery: the receiver's status and the start of its answer, or the error."""
    try:
        check_webhook_url(claimed.url, allow_private)
    except UpstreamAddressRefused as refused:
        return Outcome(error=refused.message, final=True)
    headers = signed_headers(claimed.secret, claimed.delivery_id, int(now_seconds), claimed.body)
    connector = aiohttp.TCPConnector(resolver=UpstreamAddressResolver(allow_private=allow_private), limit=1)
    try:
        async with (
            aiohttp.ClientSession(connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()) as session,
            session.post(
                claimed.url,
                data=claimed.body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            ) as response,
        ):
            # Characters are at most 4 bytes: this reads enough for the excerpt and never more.
            answer = await response.content.read(EXCERPT_CHARS_MAX * 4)
            return Outcome(status_code=response.status, excerpt=answer.decode("utf-8", errors="replace"))
    except TimeoutError:
        return Outcome(error=f"no answer within {timeout_seconds:g} s")
    except aiohttp.ClientError as failure:
        # A name that resolves only to refused addresses (DNS rebinding) will not get better by retrying.
        cause = getattr(failure, "os_error", None)
        if isinstance(cause, ResolvedOnlyToRefused):
            return Outcome(error=f"webhook url refused: {cause}", final=True)
        return Outcome(error=f"{type(failure).__name__}: {failure}")


class AlertRunner:
    """Evaluates the rules of orgs with a webhook and sends their deliveries; built from plain parts."""

    def __init__(
        self,
        db: Database,
        vault: CredentialVault,
        clock: Callable[[], datetime],
        *,
        allow_private: bool,
        limits: DeliveryLimits | None = None,
        evaluate_every_seconds: float = 15.0,
        tick_seconds: float = 1.0,
    ) -> None:
        self.db = db
        self.vault = vault
        self.clock = clock
        self.allow_private = allow_private
        self.limits = limits or DeliveryLimits()
        self.evaluate_every_seconds = evaluate_every_seconds
        self.tick_seconds = tick_seconds
        # Who holds the evaluation round's lease: this runner, under a name of its own.
        self.holder = new_id("swp")

    def evaluate_round(self) -> int | None:
        """Evaluate every org with a webhook if this process takes the period's round (``alerts.lease``);
        returns the events queued, or None when the round is not due or another process has it."""
        with self.db.read() as conn:
            if not is_due(conn, self.clock()):
                return None
        with self.db.write() as conn:
            if not take(conn, self.holder, self.clock()):
                return None
        try:
            return self.evaluate_all()
        finally:
            with self.db.write() as conn:
                give_back(conn, self.holder, self.clock() + timedelta(seconds=self.evaluate_every_seconds))

    def evaluate_all(self) -> int:
        """Evaluate every org with a webhook; returns the events queued. An org where nothing crossed or
        cleared is only read; the others are written each in a transaction of its own."""
        with self.db.read() as conn:
            orgs = webhook_orgs(conn)
        queued = 0
        for org_id in orgs:
            with self.db.read() as conn:
                if not changed(conn, org_id, self.clock()):
                    continue
            with self.db.write() as conn:
                queued += len(evaluate(conn, org_id, self.clock(), self.limits))
        return queued

    async def _send(self, claimed: Claimed) -> Outcome:
        return await post_signed(
            claimed,
            allow_private=self.allow_private,
            timeout_seconds=self.limits.timeout_seconds,
            now_seconds=self.clock().timestamp(),
        )

    async def deliver_due(self) -> list[str]:
        """Send every delivery due now (at most ``due_per_round_max``); returns their new statuses."""

        def take() -> list[Claimed]:
            # Most rounds find nothing due: a read says so without taking the database's write lock.
            with self.db.read() as conn:
                if not due_ids(conn, self.clock(), self.limits):
                    return []
            with self.db.write() as conn:
                return claim_due(conn, self.vault, self.clock(), self.limits)

        claimed = await anyio.to_thread.run_sync(take)
        if not claimed:
            return []
        outcomes = await asyncio.gather(*(self._send(one) for one in claimed))

        def finish() -> list[str]:
            with self.db.write() as conn:
                return [
                    record(conn, one, outcome, self.clock(), self.limits)
                    for one, outcome in zip(claimed, outcomes, strict=True)
                ]

        return await anyio.to_thread.run_sync(finish)

    async def send_test(self, org_id: str) -> dict[str, Any]:
        """Send a test event to the org's webhook now, once (no retries); returns its delivery with the answer."""

        def queue() -> Claimed | None:
            with self.db.write() as conn:
                if get_webhook(conn, org_id) is None:
                    raise ClientError("The org has no webhook: set one first", code="no_webhook", status_code=409)
                delivery_id = queue_test_event(conn, org_id, self.clock(), self.limits)
                return claim(conn, self.vault, delivery_id, self.clock())

        claimed = await anyio.to_thread.run_sync(queue)
        if claimed is None:  # the webhook was removed in between
            raise ClientError("The org has no webhook: set one first", code="no_webhook", status_code=409)
        outcome = await self._send(claimed)

        def finish() -> dict[str, Any]:
            with self.db.write() as conn:
                record(conn, claimed, outcome, self.clock(), self.limits, retry=False)
                delivery = get_delivery(conn, org_id, claimed.delivery_id)
            assert delivery is not None
            return delivery

        return await anyio.to_thread.run_sync(finish)

    async def run_forever(self) -> None:
        while True:
            # The sweep must outlive a passing database error, and a failed evaluation must not hold
            # back the deliveries already queued: each part is tried on its own.
            try:
                # Every tick asks whether the round is due (a read); one process per period takes it.
                queued = await anyio.to_thread.run_sync(self.evaluate_round)
                if queued:
                    log.info("queued %d alert deliveries", queued)
            except Exception:
                log.exception("alert evaluation failed")
            try:
                await self.deliver_due()
            except Exception:
                log.exception("alert delivery round failed")
            await anyio.sleep(self.tick_seconds)
